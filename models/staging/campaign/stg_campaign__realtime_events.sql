{{ stage_message_center_events(
    source('campaign', 'nmsrtevent'), 'irteventid',
    needed=var('message_center_source') == 'execution'
) }}
