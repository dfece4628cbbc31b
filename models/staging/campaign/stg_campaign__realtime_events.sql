{{ stage_message_center_events(
    source('campaign', 'nmsrtevent'), ref('base_campaign__realtime_event_repeated_keys'), 'irteventid',
    needed=var('message_center_source') == 'execution'
) }}
