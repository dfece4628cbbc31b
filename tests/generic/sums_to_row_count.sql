{#
    Reconciliation: the count measure `column_name` summed over the aggregate
    equals the rows of `compare_model` (the deduplicated fact rows), so that no
    row was dropped or counted twice on the way.
#}
{% test sums_to_row_count(model, column_name, compare_model) %}

    with

    published as (
        select coalesce(sum({{ column_name }}), 0) as counted from {{ model }}
    ),

    fact_rows as (
        select count(*) as counted from {{ compare_model }}
    )

    select
        published.counted as aggregate_total,
        fact_rows.counted as fact_rows,
        published.counted - fact_rows.counted as difference
    from published
    cross join fact_rows
    where published.counted <> fact_rows.counted

{% endtest %}
