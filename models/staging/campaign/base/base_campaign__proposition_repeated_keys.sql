{{ kept_copies_of_repeated_keys(
    source('campaign', 'nmspropositionrcp'), 'ipropositionid',
    'tslastmodified desc nulls last, istatus desc nulls last, tsevent desc nulls last'
) }}
