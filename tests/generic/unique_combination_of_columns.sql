{#
    The grain test: no two rows share the combination. NULLs group together here
    (a NULL date is a group of its own), as they do in the aggregates' GROUP BY.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as rows_sharing_the_key
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1

{% endtest %}
