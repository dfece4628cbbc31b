{# An aggregate with no rows at all is suspicious: it fails (as a warning by default). #}
{% test not_empty(model) %}

    select 'no rows' as problem
    where not exists (select 1 from {{ model }})

{% endtest %}
