{#
    published_table: how the two aggregates reach their readers.

    dbt's `table` materialization publishes before any test runs and swaps in a new
    table with `drop ... cascade`, which silently deletes the views users built on
    it and the grants made by hand. This one, in a single transaction:

      0. refreshes the repeated keys of the cube's fact tables (the base tables the
         staging views read) and counts the fact rows, in the snapshot the aggregate
         then reads (macros/repeated_keys.sql);
      1. builds the new aggregate into a working copy, <schema>_audit.<name>__candidate
         (the model's enforced contract is checked there);
      2. audits the copy: grain unique, key columns not NULL (the date may be), totals
         reconciled with the fact rows, and a volume guard against the published
         table. A failure leaves the published table untouched, keeps the copy as
         <name>__rejected, records the rejection and fails the node with the numbers;
      3. publishes: delete + insert into the stable published table, after taking a
         lock that excludes other writers but not readers, waiting at most
         `publish_lock_timeout`. Readers see the previous complete contents until
         COMMIT, then the new ones; the table, its views, grants and comments stay
         the same objects;
      4. records the outcome in <schema>_audit.publication_log, then commits.

    Two builds of the same aggregate never interleave: the second finds the
    transaction-scoped advisory lock taken and fails at once, saying so. (Two
    overlapping delete + insert could otherwise publish both contents: the second
    DELETE does not see the rows the first one inserted.)

    Model config: `meta: {audit: {grain: [...], nullable_grain: [...], count_measure: <column>,
    facts: <cube name for campaign_fact_tables>}}`.
    Vars: publish_min_volume_ratio, publish_lock_timeout, reporting_role (dbt_project.yml).
#}
{% materialization published_table, adapter='postgres' %}

    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set audit_schema = this.schema ~ '_audit' -%}
    {%- set candidate = api.Relation.create(
        database=this.database, schema=audit_schema,
        identifier=this.identifier ~ '__candidate', type='table') -%}
    {%- set rejected = api.Relation.create(
        database=this.database, schema=audit_schema,
        identifier=this.identifier ~ '__rejected', type='table') -%}
    {%- set audit = config.get('meta', {}).get('audit') -%}
    {%- if not audit -%}
        {{ exceptions.raise_compiler_error(
            "published_table needs meta.audit (grain, count_measure, facts) on " ~ model.name) }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {% do published_table_claim(target_relation) %}

    {#- 0. the facts' repeated keys, in this snapshot (macros/repeated_keys.sql) -#}
    {%- set fact_rows = refresh_repeated_keys(audit['facts']) -%}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {#- 1. the candidate (the audit schema and log exist: prepare_publication, on-run-start) -#}
    {% do adapter.drop_relation(candidate) %}
    {% call statement('main') -%}
        {{ published_table_create_candidate(candidate, sql) }}
    {%- endcall %}

    {#- 2. the audit; a rejection is committed with its copy and its record -#}
    {%- set numbers = published_table_measure(candidate, existing_relation, audit, fact_rows) -%}
    {%- set findings = published_table_findings(numbers) -%}
    {%- if findings -%}
        {% do adapter.drop_relation(rejected) %}
        {% do adapter.rename_relation(candidate, rejected) %}
        {% do published_table_record(audit_schema, numbers, 'rejected', findings | join('; ')) %}
        {% do adapter.commit() %}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ " was NOT published: " ~ findings | join('; ')
            ~ ". The published table " ~ target_relation ~ " is unchanged; the rejected aggregate is kept in "
            ~ rejected ~ " for inspection."
        ) }}
    {%- endif -%}

    {#- 3. publication -#}
    {%- set columns = adapter.get_columns_in_relation(candidate) -%}
    {%- set target_relation = published_table_ensure(target_relation, existing_relation, candidate, columns) -%}
    {%- set column_list = columns | map(attribute='name') | map('string') | list -%}
    {% call statement('publish') -%}
        set local lock_timeout = {{ quoted_literal(var('publish_lock_timeout')) }};
        -- excludes other writers (and DDL), never readers
        lock table {{ target_relation }} in share row exclusive mode;
        delete from {{ target_relation }};
        insert into {{ target_relation }} ({{ column_list | join(', ') }})
        select {{ column_list | join(', ') }} from {{ candidate }};
    {%- endcall %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do published_table_grant(target_relation) %}
    {% do apply_grants(target_relation, config.get('grants'), should_revoke=False) %}
    {% do persist_docs(target_relation, model) %}

    {#- 4. the record; the candidate is published and an older rejection obsolete -#}
    {% do published_table_record(audit_schema, numbers, 'published', none) %}
    {% do adapter.drop_relation(candidate) %}
    {% do adapter.drop_relation(rejected) %}
    {% do adapter.commit() %}

    {#- fresh statistics for the readers' queries -#}
    {% call statement('analyze') -%}
        analyze {{ target_relation }}
    {%- endcall %}
    {% do adapter.commit() %}

    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{#
    The candidate, with the contract's columns and data types. dbt's own contract
    DDL creates an empty table and fills it with `insert ... select`, which
    PostgreSQL never runs in parallel; `create table ... as` may. So the contract
    is asserted first (dbt's check and message: names and data types), and the
    table then gets exactly the declared types. Constraints would need the DDL; the
    aggregates declare none (the audit checks the keys), and a model that declares
    some is refused rather than published without them.
#}
{% macro published_table_create_candidate(candidate, sql) %}
    {%- set constrained = model.get('constraints') or (model.get('columns', {}).values()
        | selectattr('constraints') | list) -%}
    {%- if constrained -%}
        {{ exceptions.raise_compiler_error(
            "published_table does not apply contract constraints; " ~ model.name ~ " declares some") }}
    {%- endif -%}
    {%- set enforced = config.get('contract').enforced -%}
    {%- if enforced %}{{ get_assert_columns_equivalent(sql) }}{% endif %}
    create {% if config.get('unlogged', default=false) %}unlogged {% endif %}table {{ candidate }} as
    {{ get_select_subquery(sql) if enforced else sql }}
{%- endmacro %}


{#
    Opens the build's transaction, in repeatable read, with a transaction-scoped
    advisory lock on the published relation; another build holding it stops this
    one at once.
#}
{% macro published_table_claim(relation) %}
    {%- set claim -%}
        -- the repeated keys, the fact count and the candidate must read one snapshot:
        -- Campaign keeps writing, and rows committed between the statements would
        -- otherwise be counted twice or fail the reconciliation (the first
        -- statement of the transaction)
        set transaction isolation level repeatable read;
        select
            pg_try_advisory_xact_lock(hashtextextended({{ quoted_literal('campaign_cubes.publish ' ~ relation) }}, 0))
            as claimed
    {%- endset -%}
    {%- if not run_query(claim).columns[0].values()[0] -%}
        {{ exceptions.raise_compiler_error(
            "another build of " ~ relation ~ " is running right now; nothing was done (run again once it is over)") }}
    {%- endif -%}
{% endmacro %}


{# The figures the audit decides on, in one query over the candidate. #}
{% macro published_table_measure(candidate, existing_relation, audit, fact_rows) %}
    {%- set grain = audit['grain'] -%}
    {%- set measure = audit['count_measure'] -%}
    {%- set nullable = audit.get('nullable_grain', []) -%}
    {%- set required = grain | reject('in', nullable) | list -%}
    {%- set query -%}
        select
            (
                select count(*) from (
                    select 1 from {{ candidate }}
                    group by {{ grain | join(', ') }}
                    having count(*) > 1
                ) as repeated
            ) as duplicate_keys,
            totals.null_keys,
            totals.candidate_total,
            {% if existing_relation is not none -%}
            (select coalesce(sum({{ measure }}), 0) from {{ existing_relation }})
            {%- else -%}
            null::bigint
            {%- endif %} as published_total
        from (
            -- both figures in one pass over the candidate
            select
                count(*) filter (where {{ required | join(' is null or ') }} is null) as null_keys,
                coalesce(sum({{ measure }}), 0) as candidate_total
            from {{ candidate }}
        ) as totals
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {{ return({
        'model': model['name'], 'measure': measure, 'grain': grain,
        'duplicate_keys': row['duplicate_keys'], 'null_keys': row['null_keys'],
        'candidate_total': row['candidate_total'], 'fact_rows': fact_rows,
        'published_total': row['published_total'],
        'min_ratio': var('publish_min_volume_ratio') | float,
    }) }}
{% endmacro %}


{# Why the candidate must not be published; empty when it may. #}
{% macro published_table_findings(numbers) %}
    {%- set findings = [] -%}
    {%- if numbers['duplicate_keys'] > 0 -%}
        {%- do findings.append("grain check failed: " ~ numbers['duplicate_keys'] ~ " key combinations of ("
            ~ numbers['grain'] | join(', ') ~ ") appear more than once") -%}
    {%- endif -%}
    {%- if numbers['null_keys'] > 0 -%}
        {%- do findings.append("key check failed: " ~ numbers['null_keys'] ~ " rows have a NULL key column") -%}
    {%- endif -%}
    {%- if numbers['candidate_total'] != numbers['fact_rows'] -%}
        {%- do findings.append("reconciliation failed: sum(" ~ numbers['measure'] ~ ") is "
            ~ numbers['candidate_total'] ~ " but the fact rows number " ~ numbers['fact_rows']) -%}
    {%- endif -%}
    {%- set published = numbers['published_total'] -%}
    {%- if published is not none and published > 0 and numbers['min_ratio'] > 0
        and numbers['candidate_total'] < numbers['min_ratio'] * (published | float) -%}
        {%- do findings.append("volume guard: the new aggregate counts " ~ numbers['candidate_total'] ~ " "
            ~ numbers['measure'] ~ ", below " ~ numbers['min_ratio'] ~ " x the published " ~ published
            ~ " (set var publish_min_volume_ratio: 0 for a deliberate purge)") -%}
    {%- endif -%}
    {{ return(findings) }}
{% endmacro %}


{#
    The published table, created on first use from the candidate's columns. When the
    contract changed (other columns), it is rebuilt only on --full-refresh, without
    cascade: dependent views then stop the run with PostgreSQL's own message.
#}
{% macro published_table_ensure(target_relation, existing_relation, candidate, columns) %}
    {%- if existing_relation is not none -%}
        {%- set published_columns = adapter.get_columns_in_relation(existing_relation) -%}
        {%- set shape = columns | map(attribute='name') | join(',') ~ '|' ~ columns | map(attribute='dtype') | join(',') -%}
        {%- set published_shape = published_columns | map(attribute='name') | join(',') ~ '|'
            ~ published_columns | map(attribute='dtype') | join(',') -%}
        {%- if shape == published_shape -%}
            {{ return(existing_relation) }}
        {%- elif not flags.FULL_REFRESH -%}
            {{ exceptions.raise_compiler_error(
                existing_relation ~ " has other columns than the model now produces (" ~ published_shape
                ~ " vs " ~ shape ~ "). Nothing was published. Run once with --full-refresh to recreate it"
                ~ " (views built on it must be dropped first).") }}
        {%- endif -%}
        {% call statement('drop_published') -%}
            drop table {{ existing_relation }}
        {%- endcall %}
    {%- endif -%}
    {% call statement('create_published') -%}
        create table {{ target_relation }} (like {{ candidate }})
    {%- endcall %}
    {{ return(target_relation) }}
{% endmacro %}


{# The reporting role (prepared by prepare_publication) may read the published table. #}
{% macro published_table_grant(relation) %}
    {%- set role = var('reporting_role') | string -%}
    {%- if role | length > 0 and published_table_role_exists(role) -%}
        {% call statement('grant_reporting_role') -%}
            grant select on {{ relation }} to {{ adapter.quote(role) }}
        {%- endcall %}
    {%- endif -%}
{% endmacro %}


{% macro published_table_role_exists(role) %}
    {{ return(run_query("select 1 from pg_roles where rolname = " ~ quoted_literal(role)).rows | length > 0) }}
{% endmacro %}


{#
    Once per dbt invocation, before any model (on-run-start: one thread, and an
    advisory lock against other dbt processes), what all publications share: the
    published and audit schemas, the publication log, and the read-only reporting
    role (var reporting_role; empty to skip) with usage on the published schema and
    nothing else. A missing role is created when the build's user may; otherwise the
    run warns and publishes without the grant.
#}
{% macro prepare_publication() %}
    {%- if execute -%}
        {%- set published_schema = adapter.quote(target.schema) -%}
        {%- set audit_schema = target.schema ~ '_audit' -%}
        {%- set role = var('reporting_role') | string -%}
        {% call statement('prepare_publication') -%}
            select pg_advisory_xact_lock(hashtextextended('campaign_cubes.prepare_publication', 0));
            create schema if not exists {{ published_schema }};
            create schema if not exists {{ adapter.quote(audit_schema) }};
            {{ published_table_log_ddl(audit_schema) }};
        {%- endcall %}
        {%- if role | length > 0 -%}
            {%- set may_create = run_query(
                "select 1 from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)"
            ).rows | length > 0 -%}
            {%- set exists = published_table_role_exists(role) -%}
            {%- if exists or may_create -%}
                {% call statement('prepare_reporting_role') -%}
                    {% if not exists -%}
                    create role {{ adapter.quote(role) }} nologin;
                    {% endif -%}
                    grant usage on schema {{ published_schema }} to {{ adapter.quote(role) }};
                {%- endcall %}
            {%- else -%}
                {{ exceptions.warn("reporting role " ~ role ~ " does not exist and " ~ target.user
                    ~ " may not create it: the aggregates are published without granting it select") }}
            {%- endif -%}
        {%- endif -%}
        {% do adapter.commit() %}
    {%- endif -%}
{% endmacro %}


{% macro published_table_log_ddl(audit_schema) %}
    create table if not exists {{ adapter.quote(audit_schema) }}.publication_log (
        model text not null,
        invocation_id text not null,
        recorded_at timestamptz not null default clock_timestamp(),
        outcome text not null,
        candidate_total bigint,
        fact_rows bigint,
        published_total_before bigint,
        duplicate_keys bigint,
        null_keys bigint,
        findings text
    )
{% endmacro %}


{% macro published_table_record(audit_schema, numbers, outcome, findings) %}
    {% call statement('record_publication') -%}
        insert into {{ adapter.quote(audit_schema) }}.publication_log (
            model, invocation_id, outcome, candidate_total, fact_rows,
            published_total_before, duplicate_keys, null_keys, findings
        )
        values (
            {{ quoted_literal(numbers['model']) }}, {{ quoted_literal(invocation_id) }},
            {{ quoted_literal(outcome) }}, {{ numbers['candidate_total'] }}, {{ numbers['fact_rows'] }},
            {{ numbers['published_total'] if numbers['published_total'] is not none else 'null' }},
            {{ numbers['duplicate_keys'] }}, {{ numbers['null_keys'] }},
            {{ quoted_literal(findings) if findings else 'null' }}
        )
    {%- endcall %}
{% endmacro %}


{#
    The Campaign tables behind each cube, for the configured message_center_source
    (the staging models read the same tables): each with its key and the base model
    of its repeated keys.
#}
{% macro campaign_fact_tables(facts) %}
    {%- if facts == 'propositions' -%}
        {{ return([
            {'table': 'nmspropositionrcp', 'key': 'ipropositionid', 'base': 'base_campaign__proposition_repeated_keys'},
        ]) }}
    {%- elif var('message_center_source') == 'execution' -%}
        {{ return([
            {'table': 'nmsrtevent', 'key': 'irteventid', 'base': 'base_campaign__realtime_event_repeated_keys'},
            {'table': 'nmsbatchevent', 'key': 'ibatcheventid', 'base': 'base_campaign__batch_event_repeated_keys'},
        ]) }}
    {%- else -%}
        {{ return([
            {'table': 'nmseventhisto', 'key': 'bieventhistoid', 'base': 'base_campaign__event_history_repeated_keys'},
        ]) }}
    {%- endif -%}
{% endmacro %}
