with

propositions as (

    select * from {{ ref('stg_campaign__propositions') }}

),

offer_spaces as (

    select * from {{ ref('stg_campaign__offer_spaces') }}

),

deliveries as (

    select * from {{ ref('stg_campaign__deliveries') }}

),

resolved as (

    select
        propositions.proposition_id,
        -- NULL (its own member) when tsevent is NULL, not finite or out of range
        {{ local_date(campaign_instant('propositions.proposed_at', 'nmspropositionrcp', 'tsevent')) }}
            as proposition_date,
        -- the channel of the space the offer was shown in; for inbound propositions
        -- and spaces that are missing or carry no channel, the delivery's channel
        coalesce(offer_spaces.channel_code, deliveries.message_type_code, -1)::smallint as channel_code,
        propositions.delivery_id,
        propositions.offer_id,
        propositions.recipient_id,
        propositions.proposition_status_code,
        -- NaN, infinite and absurd weights are left out of the sums
        {{ finite_weight('propositions.weight') }} as weight
    from propositions
    left join offer_spaces
        on propositions.offer_space_id = offer_spaces.offer_space_id
    left join deliveries
        on propositions.delivery_id = deliveries.delivery_id

)

select * from resolved
