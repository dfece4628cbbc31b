{{ message_center_repeated_keys(
    source('campaign', 'nmseventhisto'), 'bieventhistoid',
    needed=var('message_center_source') == 'eventhisto'
) }}
