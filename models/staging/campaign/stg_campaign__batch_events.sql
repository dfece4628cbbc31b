{%- set fact = campaign_facts()['nmsbatchevent'] -%}

with

-- each key once: of a key held more than once, the latest copy (no rows when the
-- table is absent and message_center_source does not read it)
source as (

    {{ message_center_events(fact, ref('base_campaign__batch_event_repeated_keys')) }}

),

renamed as (

    select
        ibatcheventid::bigint as event_id,
        stype::{{ sql_type('text') }} as event_type,
        istatus::smallint as event_status_code,
        iwishedchannel::smallint as wished_channel_code,
        ideliveryid::integer as delivery_id,
        tscreated as created_at,
        tsprocessing as processing_started_at,
        tsprocessed as processed_at,
        tslastmodified as last_modified_at,
        sexternalid::{{ sql_type('text') }} as external_id,
        sorigin::{{ sql_type('text') }} as origin,
        semail::{{ sql_type('text') }} as email,
        smobilephone::{{ sql_type('text') }} as mobile_phone,
        slanguage::{{ sql_type('text') }} as language_code,
        scountrycode::{{ sql_type('text') }} as country_code,
        mdata as payload_xml
    from source
    -- key 0 is Campaign's placeholder row, not an event
    where ibatcheventid is distinct from 0

),

final as (

    select
        event_id,
        event_type,
        event_status_code,
        wished_channel_code,
        delivery_id,
        created_at,
        processing_started_at,
        processed_at,
        last_modified_at,
        external_id,
        origin,
        email,
        mobile_phone,
        language_code,
        country_code,
        payload_xml
    from renamed

)

select * from final
