{#
    Run once before any node (on-run-start): a bad setting stops the run with a
    message that names it, instead of an error deep inside a model.
#}
{% macro validate_settings() %}
    {%- if execute -%}
        {%- set mode = var('message_center_source') -%}
        {%- if mode not in ['eventhisto', 'execution'] -%}
            {{ exceptions.raise_compiler_error(
                "var message_center_source is '" ~ mode
                ~ "'; expected 'eventhisto' (control instance, nmseventhisto) or"
                ~ " 'execution' (execution instance, nmsrtevent + nmsbatchevent)"
            ) }}
        {%- endif -%}

        {%- set zone = var('reporting_timezone') | string -%}
        {%- set known_zone = run_query(
            "select count(*) from pg_timezone_names where lower(name) = lower("
            ~ quoted_literal(zone) ~ ")"
        ).columns[0].values()[0] -%}
        {%- if known_zone == 0 -%}
            {{ exceptions.raise_compiler_error(
                "var reporting_timezone is '" ~ zone ~ "', which PostgreSQL does not know as"
                ~ " a time zone name; use an IANA name such as 'UTC' or 'Europe/Paris'"
                ~ " (select name from pg_timezone_names lists them)"
            ) }}
        {%- endif -%}

        {%- set schema = var('campaign_schema') | string -%}
        {%- set schema_found = run_query(
            "select count(*) from pg_namespace where nspname = " ~ quoted_literal(schema)
        ).columns[0].values()[0] -%}
        {%- if schema_found == 0 -%}
            {{ exceptions.raise_compiler_error(
                "var campaign_schema is '" ~ schema ~ "', but database '" ~ target.dbname
                ~ "' has no such schema; point it at the schema holding the Campaign"
                ~ " tables (public on a Campaign database)"
            ) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
