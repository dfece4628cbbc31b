{#
    Used by the generic tests in tests/generic/codes_listed_in_seed.sql. Runs the
    query once: logs one line naming the codes and how many source rows carry each,
    and returns them as the test's result rows (a VALUES list), so that the test
    does not read the model a second time.
#}
{% macro unlisted_codes(unlisted_sql, model, column_name, what) %}
    {%- if not execute -%}
        {{ return(unlisted_sql) }}
    {%- endif -%}
    {%- set found = run_query(unlisted_sql ~ " order by 1") -%}
    {%- if found.rows | length == 0 -%}
        {{ return("select null::bigint as unlisted_code, 0::bigint as source_rows where false") }}
    {%- endif -%}
    {%- set listing, values = [], [] -%}
    {%- for row in found.rows -%}
        {%- set code = row[0] if row[0] is not none else "NULL" -%}
        {%- do listing.append(code ~ " (" ~ row[1] ~ " rows)") -%}
        {%- do values.append("(" ~ code ~ "::bigint, " ~ row[1] ~ "::bigint)") -%}
    {%- endfor -%}
    {{ log("campaign-cubes: " ~ model.identifier ~ "." ~ column_name ~ " has codes " ~ what ~ ": "
        ~ listing | join(", "), info=True) }}
    {{ return("select * from (values " ~ values | join(", ") ~ ") as unlisted (unlisted_code, source_rows)") }}
{% endmacro %}
