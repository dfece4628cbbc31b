{{ stage_message_center_events(
    'nmsrtevent', source('campaign', 'nmsrtevent'), ref('base_campaign__realtime_event_repeated_keys'),
    key_column='irteventid', needed=var('message_center_source') == 'execution'
) }}
