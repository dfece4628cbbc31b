{{ stage_message_center_events(
    source('campaign', 'nmsbatchevent'), ref('base_campaign__batch_event_repeated_keys'), 'ibatcheventid',
    needed=var('message_center_source') == 'execution'
) }}
