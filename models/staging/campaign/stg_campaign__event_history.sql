{{ stage_message_center_events(
    source('campaign', 'nmseventhisto'), 'bieventhistoid',
    needed=var('message_center_source') == 'eventhisto'
) }}
