{#
    dbt's own naming (a custom schema becomes <target schema>_<custom>), preceded by
    the check of every setting that needs no database (macros/validate_settings.sql).

    dbt calls this macro while it parses the project, before any command connects:
    it is the one place that runs ahead of dbt's own `create schema` (which comes
    before on-run-start) for run, build, seed, test, show and docs alike. A partial
    parse skips it, but dbt parses in full whenever --vars, the profile (hence
    CAMPAIGN_CUBES_SCHEMA) or the target changed, and a parse that failed is not
    saved, so an unchanged bad setting fails again.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- do validate_static_settings() -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
