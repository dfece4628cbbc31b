{#
    Enumeration codes missing from their seed. Such rows are kept, labelled
    `unknown (<code>)`; these tests (severity warn) name the codes in the run's log
    so that the seed can be completed. -1 stands for "no code" and is not reported.

    codes_listed_in_seed: for a model that carries codes only (checks the seed).
    codes_labelled_unknown: for a model that carries the label too (reads only the
    model, so selecting one cube never drags in the other cube's tests through a
    shared seed).
#}
{% test codes_listed_in_seed(model, column_name, seed, seed_column) %}

    {%- set unlisted_sql -%}
        select
            checked.{{ column_name }} as unlisted_code,
            count(*) as source_rows
        from {{ model }} as checked
        left join {{ seed }} as listed
            on checked.{{ column_name }} = listed.{{ seed_column }}
        where
            listed.{{ seed_column }} is null
            and checked.{{ column_name }} is distinct from -1
        group by checked.{{ column_name }}
    {%- endset -%}

    {{ unlisted_codes(unlisted_sql, model, column_name, "missing from " ~ seed.identifier) }}

{% endtest %}


{% test codes_labelled_unknown(model, column_name, label_column, count_column) %}

    {%- set unlisted_sql -%}
        select
            {{ column_name }} as unlisted_code,
            sum({{ count_column }}) as source_rows
        from {{ model }}
        where {{ label_column }} like 'unknown (%'
        group by {{ column_name }}
    {%- endset -%}

    {{ unlisted_codes(unlisted_sql, model, column_name, "not in its seed") }}

{% endtest %}

