{{ repeated_keys(source('campaign', 'nmspropositionrcp'), 'ipropositionid') }}
