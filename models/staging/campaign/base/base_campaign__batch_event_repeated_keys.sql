{{ message_center_repeated_keys(
    source('campaign', 'nmsbatchevent'), 'ibatcheventid',
    needed=var('message_center_source') == 'execution'
) }}
