{{ message_center_repeated_keys(campaign_facts()['nmsrtevent']) }}
