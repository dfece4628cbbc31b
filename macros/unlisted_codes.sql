{# Used by the generic tests in tests/generic/codes_listed_in_seed.sql. #}
{# One log line naming the codes and how many source rows carry each. #}
{% macro log_unlisted_codes(unlisted_sql, model, column_name, what) %}
    {%- if execute -%}
        {%- set found = run_query(unlisted_sql ~ " order by 1") -%}
        {%- if found.rows | length > 0 -%}
            {%- set listing = [] -%}
            {%- for row in found.rows -%}
                {%- do listing.append((row[0] if row[0] is not none else "NULL") ~ " (" ~ row[1] ~ " rows)") -%}
            {%- endfor -%}
            {{ log("campaign-cubes: " ~ model.identifier ~ "." ~ column_name ~ " has codes " ~ what ~ ": "
                ~ listing | join(", "), info=True) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
