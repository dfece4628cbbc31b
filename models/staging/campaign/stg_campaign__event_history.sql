{{ stage_message_center_events(
    'nmseventhisto', source('campaign', 'nmseventhisto'), ref('base_campaign__event_history_repeated_keys'),
    key_column='bieventhistoid', needed=var('message_center_source') == 'eventhisto'
) }}
