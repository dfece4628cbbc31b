{#
    Reconciliation on every build, without reading the Campaign tables again: the
    publication audit (macros/published_table.sql) counted the fact rows and
    compared them with the aggregate's count measure before it published. This
    test reads the audit's latest record for the model and fails unless that build
    was published with both totals equal.
#}
{% test publication_reconciled(model) %}

    with

    latest as (
        select outcome, candidate_total, fact_rows
        from {{ adapter.quote(model.schema ~ '_audit') }}.publication_log
        where lower(model) = lower('{{ model.identifier }}')
        order by recorded_at desc
        limit 1
    )

    select
        'no publication recorded' as problem,
        null::bigint as aggregate_total,
        null::bigint as fact_rows
    where not exists (select 1 from latest)

    union all

    select
        'latest build: ' || outcome as problem,
        candidate_total as aggregate_total,
        fact_rows
    from latest
    where outcome <> 'published' or candidate_total is distinct from fact_rows

{% endtest %}
