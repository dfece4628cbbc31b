{{ message_center_repeated_keys(
    source('campaign', 'nmsrtevent'), 'irteventid',
    needed=var('message_center_source') == 'execution'
) }}
