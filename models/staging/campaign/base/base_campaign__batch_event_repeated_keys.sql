{{ message_center_kept_copies(
    source('campaign', 'nmsbatchevent'), 'ibatcheventid',
    needed=var('message_center_source') == 'execution'
) }}
