{{ message_center_kept_copies(
    source('campaign', 'nmsrtevent'), 'irteventid',
    needed=var('message_center_source') == 'execution'
) }}
