{{ message_center_kept_copies(
    source('campaign', 'nmseventhisto'), 'bieventhistoid',
    needed=var('message_center_source') == 'eventhisto'
) }}
