{%- set fact = campaign_facts()['nmspropositionrcp'] -%}
{{ repeated_keys(source('campaign', fact.table), fact.key) }}
