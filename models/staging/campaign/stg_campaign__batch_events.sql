{{ stage_message_center_events(
    source('campaign', 'nmsbatchevent'), 'ibatcheventid',
    needed=var('message_center_source') == 'execution'
) }}
