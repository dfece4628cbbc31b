{#
    Enumeration codes missing from their seed. Such rows are kept, labelled
    `unknown (<code>)`; this test (severity warn) names the codes in the run's log
    so that the seed can be completed. -1 stands for "no code" and is not reported.
#}
{% test codes_listed_in_seed(model, column_name, seed, seed_column, count_column=none) %}

    {%- set unlisted_sql -%}
        select
            checked.{{ column_name }} as unlisted_code,
            {% if count_column -%}
            sum(checked.{{ count_column }})
            {%- else -%}
            count(*)
            {%- endif %} as source_rows
        from {{ model }} as checked
        left join {{ seed }} as listed
            on checked.{{ column_name }} = listed.{{ seed_column }}
        where
            listed.{{ seed_column }} is null
            and checked.{{ column_name }} is distinct from -1
        group by checked.{{ column_name }}
    {%- endset -%}

    {%- if execute -%}
        {%- set found = run_query(unlisted_sql ~ " order by 1") -%}
        {%- if found.rows | length > 0 -%}
            {%- set listing = [] -%}
            {%- for row in found.rows -%}
                {%- do listing.append((row[0] if row[0] is not none else "NULL") ~ " (" ~ row[1] ~ " rows)") -%}
            {%- endfor -%}
            {{ log("campaign-cubes: " ~ model.identifier ~ "." ~ column_name ~ " has codes missing from "
                ~ seed.identifier ~ ": " ~ listing | join(", "), info=True) }}
        {%- endif -%}
    {%- endif %}

    {{ unlisted_sql }}

{% endtest %}
