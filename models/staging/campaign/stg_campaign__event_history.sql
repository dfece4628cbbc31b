{{ stage_message_center_events(
    source('campaign', 'nmseventhisto'), ref('base_campaign__event_history_repeated_keys'), 'bieventhistoid',
    needed=var('message_center_source') == 'eventhisto'
) }}
