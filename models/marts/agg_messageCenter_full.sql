{{ config(alias='agg_messagecenter_full') }}

with

events as (

    select * from {{ ref('int_message_center_events__unioned') }}

),

channels as (

    select * from {{ ref('campaign_channels') }}

),

event_statuses as (

    select * from {{ ref('campaign_event_statuses') }}

),

-- aggregate the fact rows on codes first; labels join the small result
aggregated as (

    select
        event_date,
        channel_code,
        status_code,
        event_type,
        count(*) as events,
        count(processed_at) as processed_events,
        -- exact (numeric) epoch arithmetic, so that results do not depend on the
        -- order in which parallel workers add them up; NULL unless both ends are
        -- finite and within the supported range
        {{ exact_average(seconds_between('created_at', 'processed_at')) }}::{{ sql_type('double precision') }}
            as avg_processing_seconds,
        {{ max_seconds_between('created_at', 'processed_at') }}::{{ sql_type('double precision') }}
            as max_processing_seconds
    from events
    group by
        event_date,
        channel_code,
        status_code,
        event_type

),

final as (

    select
        aggregated.event_date,
        {{ date_levels('aggregated.event_date', 'event') }},
        aggregated.channel_code,
        {{ code_label(
            'channels.channel_code', 'channels.channel_label', 'aggregated.channel_code'
        ) }}::{{ sql_type('text') }} as channel_label,
        aggregated.status_code,
        {{ code_label(
            'event_statuses.status_code', 'event_statuses.status_name', 'aggregated.status_code'
        ) }}::{{ sql_type('text') }} as status_name,
        {{ code_label(
            'event_statuses.status_code', 'event_statuses.status_label', 'aggregated.status_code'
        ) }}::{{ sql_type('text') }} as status_label,
        aggregated.event_type,
        aggregated.events,
        aggregated.processed_events,
        aggregated.avg_processing_seconds,
        aggregated.max_processing_seconds
    from aggregated
    left join channels
        on aggregated.channel_code = channels.channel_code
    left join event_statuses
        on aggregated.status_code = event_statuses.status_code

)

select * from final
