{%- set mode = var('message_center_source') -%}

with

event_history as (

    select * from {{ ref('stg_campaign__event_history') }}

),

realtime_events as (

    select * from {{ ref('stg_campaign__realtime_events') }}

),

batch_events as (

    select * from {{ ref('stg_campaign__batch_events') }}

),

-- The control instance aggregates its archive, an execution instance its two
-- queues. The constant filters are folded by the planner: the branches of the
-- other mode are never scanned. Timestamps become instants (a Campaign column
-- stored without time zone is read in campaign_database_timezone: macros/dates.sql).
selected_events as (

    select
        'nmseventhisto' as source_table,
        event_id,
        event_type,
        event_status_code,
        wished_channel_code,
        {{ campaign_instant('created_at', 'nmseventhisto', 'tscreated') }} as created_at,
        {{ campaign_instant('processed_at', 'nmseventhisto', 'tsprocessed') }} as processed_at
    from event_history
    where '{{ mode }}' = 'eventhisto'

    union all

    select
        'nmsrtevent' as source_table,
        event_id,
        event_type,
        event_status_code,
        wished_channel_code,
        {{ campaign_instant('created_at', 'nmsrtevent', 'tscreated') }} as created_at,
        {{ campaign_instant('processed_at', 'nmsrtevent', 'tsprocessed') }} as processed_at
    from realtime_events
    where '{{ mode }}' = 'execution'

    union all

    select
        'nmsbatchevent' as source_table,
        event_id,
        event_type,
        event_status_code,
        wished_channel_code,
        {{ campaign_instant('created_at', 'nmsbatchevent', 'tscreated') }} as created_at,
        {{ campaign_instant('processed_at', 'nmsbatchevent', 'tsprocessed') }} as processed_at
    from batch_events
    where '{{ mode }}' = 'execution'

),

normalized as (

    select
        source_table,
        event_id,
        -- NULL (its own member) when tscreated is NULL, not finite or out of range
        {{ local_date('created_at') }} as event_date,
        coalesce(wished_channel_code, -1)::smallint as channel_code,
        coalesce(event_status_code, -1)::smallint as status_code,
        -- blank means no type: spaces, tabs and line breaks alike
        coalesce(nullif(btrim(event_type, {{ blank_characters() }}), ''), '(none)') as event_type,
        created_at,
        processed_at
    from selected_events

)

select * from normalized
