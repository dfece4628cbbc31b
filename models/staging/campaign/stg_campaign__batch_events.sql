{{ stage_message_center_events(
    'nmsbatchevent', source('campaign', 'nmsbatchevent'), ref('base_campaign__batch_event_repeated_keys'),
    key_column='ibatcheventid', needed=var('message_center_source') == 'execution'
) }}
