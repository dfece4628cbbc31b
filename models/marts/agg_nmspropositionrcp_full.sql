{{ config(alias='agg_nmspropositionrcp_full') }}

with

propositions as (

    select * from {{ ref('int_propositions__channel_resolved') }}

),

offers as (

    select * from {{ ref('stg_campaign__offers') }}

),

deliveries as (

    select * from {{ ref('stg_campaign__deliveries') }}

),

channels as (

    select * from {{ ref('campaign_channels') }}

),

-- aggregate the fact rows on codes and ids first; labels join the small result
aggregated as (

    select
        proposition_date,
        channel_code,
        delivery_id,
        offer_id,
        count(*) as propositions,
        -- confirmed proposition status codes (seeds/campaign_proposition_statuses.csv)
        count(*) filter (where proposition_status_code = 1) as presented,
        count(*) filter (where proposition_status_code = 3) as accepted,
        count(*) filter (where proposition_status_code = 5) as rejected,
        count(*) filter (where proposition_status_code = 99) as control_group,
        -- recipient 0 is Campaign's "no recipient" (anonymous inbound), not a person
        count(distinct nullif(recipient_id, 0)) as recipients,
        sum(weight) as total_weight
    from propositions
    group by
        proposition_date,
        channel_code,
        delivery_id,
        offer_id

),

final as (

    select
        aggregated.proposition_date,
        {{ date_levels('aggregated.proposition_date', 'proposition') }},
        aggregated.channel_code,
        {{ code_label(
            'channels.channel_code', 'channels.channel_label', 'aggregated.channel_code'
        ) }}::{{ sql_type('text') }} as channel_label,
        aggregated.delivery_id,
        {{ link_label(
            'deliveries.delivery_id', 'deliveries.delivery_label', 'aggregated.delivery_id', 'no delivery'
        ) }}::{{ sql_type('text') }} as delivery_label,
        aggregated.offer_id,
        {{ link_label(
            'offers.offer_id', 'offers.offer_name', 'aggregated.offer_id', 'no offer'
        ) }}::{{ sql_type('text') }} as offer_name,
        {{ link_label(
            'offers.offer_id', 'offers.offer_label', 'aggregated.offer_id', 'no offer'
        ) }}::{{ sql_type('text') }} as offer_label,
        aggregated.propositions,
        aggregated.presented,
        aggregated.accepted,
        aggregated.rejected,
        aggregated.control_group,
        {{ exact_ratio(
            'aggregated.accepted', 'aggregated.presented + aggregated.accepted + aggregated.rejected'
        ) }} as acceptance_rate,
        aggregated.recipients,
        aggregated.total_weight
    from aggregated
    left join channels
        on aggregated.channel_code = channels.channel_code
    left join deliveries
        on aggregated.delivery_id = deliveries.delivery_id
    left join offers
        on aggregated.offer_id = offers.offer_id

)

select * from final
