{#
    published_table: how the two aggregates reach their readers.

    dbt's `table` materialization publishes before any test runs and swaps in a new
    table with `drop ... cascade`, which silently deletes the views users built on
    it and the grants made by hand. This one, in a single transaction:

      0. refuses a cube whose fact tables are too old (var stale_source_after,
         macros/source_freshness.sql): nothing is built, the refusal is recorded;
         then refreshes the repeated keys of the cube's fact tables (the base tables the
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
    model's row of <schema>_audit.publication_claims locked and fails at once,
    saying so. (Two overlapping delete + insert could otherwise publish both
    contents: the second DELETE does not see the rows the first one inserted.) Only
    the build's role reaches that schema: no other login can take or fake the claim
    (docs/design-locks.md).

    Model config: `meta: {audit: {grain: [...], nullable_grain: [...], count_measure: <column>,
    facts: <cube name for campaign_fact_tables>}}`.
    Vars: publish_min_volume_ratio, publish_lock_timeout, reporting_role, stale_source_after
    (dbt_project.yml).
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

    {#- facts too old to publish: nothing is built (macros/source_freshness.sql) -#}
    {% do refuse_stale_source(audit, audit_schema, 'table ' ~ target_relation) %}

    {#- 0. the facts' repeated keys, in this snapshot (macros/repeated_keys.sql) -#}
    {%- set started = published_table_step(this.identifier ~ ": key pass (repeated keys, fact rows)") -%}
    {%- set fact_rows = refresh_repeated_keys(audit['facts']) -%}
    {%- set started = published_table_step(this.identifier ~ ": key pass done, " ~ fact_rows ~ " fact rows", started) -%}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {#- 1. the candidate (the audit schema and log exist: prepare_publication, on-run-start) -#}
    {% do adapter.drop_relation(candidate) %}
    {% call statement('main') -%}
        {{ published_table_create_candidate(candidate, sql) }}
    {%- endcall %}
    {%- set started = published_table_step(this.identifier ~ ": candidate built in " ~ candidate, started) -%}

    {#- 2. the audit; a rejection is committed with its copy and its record -#}
    {%- set numbers = published_table_measure(candidate, existing_relation, audit, fact_rows) -%}
    {%- set findings = published_table_findings(numbers) -%}
    {%- set started = published_table_step(this.identifier ~ ": audit " ~ ("refused the candidate" if findings
        else "passed (" ~ numbers['candidate_total'] ~ " " ~ numbers['measure'] ~ ")"), started) -%}
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
        -- the var, checked and in milliseconds (macros/validate_settings.sql)
        set local lock_timeout = {{ quoted_literal(publish_lock_timeout_ms() ~ 'ms') }};
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

    {%- set started = published_table_step(this.identifier ~ ": published into " ~ target_relation, started) -%}

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
    One long step of a publication, for the live progress of orchestrate.py
    (campaign_cubes/progress.py reads the `step: ` prefix): its text, and the seconds
    since `since` (the previous step's return value). Returns the current time.
#}
{% macro published_table_step(text, since=none) %}
    {%- set now = modules.datetime.datetime.now() -%}
    {%- set took = "" if since is none else " (" ~ "%.1f" | format((now - since).total_seconds()) ~ " s)" -%}
    {{ log("step: " ~ text ~ took, info=True) }}
    {{ return(now) }}
{% endmacro %}


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
    Opens the build's transaction, in repeatable read, locking the published
    model's row of <schema>_audit.publication_claims (registered by
    prepare_publication) until it ends; another build holding it stops this one
    at once. The reporting role has no usage on that schema: it can neither take
    nor fake the claim, as it could an advisory lock.
#}
{% macro published_table_claim(relation) %}
    {%- set claims = quote_identifier(relation.schema ~ '_audit') ~ '.publication_claims' -%}
    {%- set model_key = quoted_literal(relation.identifier) -%}
    {%- set claim -%}
        -- the repeated keys, the fact count and the candidate must read one snapshot:
        -- Campaign keeps writing, and rows committed between the statements would
        -- otherwise be counted twice or fail the reconciliation (the first
        -- statement of the transaction)
        set transaction isolation level repeatable read;
        with claimed as (
            select model from {{ claims }}
            where model = {{ model_key }}
            for update skip locked
        )

        select
            (select count(*) from claimed) as claimed,
            (select count(*) from {{ claims }} where model = {{ model_key }}) as registered
    {%- endset -%}
    {%- set row = run_query(claim).rows[0] -%}
    {%- if row['registered'] == 0 -%}
        {{ exceptions.raise_compiler_error(
            relation.identifier ~ " has no row in " ~ claims ~ " (on-run-start registers every published"
            ~ " model): nothing was done; run dbt again") }}
    {%- elif row['claimed'] == 0 -%}
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
        'min_ratio': publish_min_volume_ratio(),
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


{#
    The reporting role (prepared by prepare_publication) may read the published
    table; never a reserved or privileged role (published_table_role_refusal).
#}
{% macro published_table_grant(relation) %}
    {%- set role = var('reporting_role', '') -%}
    {%- set role = '' if role is none else role | string -%}
    {%- if role | length > 0 and published_table_role_refusal(role) is none
        and published_table_role_exists(role) -%}
        {% call statement('grant_reporting_role') -%}
            grant select on {{ relation }} to {{ quote_identifier(role) }}
        {%- endcall %}
    {%- endif -%}
{% endmacro %}


{% macro published_table_role_exists(role) %}
    {{ return(run_query("select 1 from pg_roles where rolname = " ~ quoted_literal(role)).rows | length > 0) }}
{% endmacro %}


{#
    Why `role` must not become the reporting role, or none: a name PostgreSQL
    reserves (pg_*, public, ...), or an existing role with powers beyond reading
    (superuser, createrole, createdb, replication, bypassrls). Such a role is never
    created nor granted anything.
#}
{% macro published_table_role_refusal(role) %}
    {%- if role | lower in reserved_role_names() or (role | lower).startswith('pg_') -%}
        {{ return("a name PostgreSQL reserves") }}
    {%- endif -%}
    {%- set found = run_query(
        "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls from pg_roles"
        ~ " where rolname = " ~ quoted_literal(role)) -%}
    {%- if found.rows | length > 0 -%}
        {%- set powers = [] -%}
        {%- for power in ['superuser', 'createrole', 'createdb', 'replication', 'bypassrls'] -%}
            {%- if found.rows[0][loop.index0] -%}{%- do powers.append(power) -%}{%- endif -%}
        {%- endfor -%}
        {%- if powers -%}
            {{ return("an existing role with " ~ powers | join(', ')) }}
        {%- endif -%}
    {%- endif -%}
    {{ return(none) }}
{% endmacro %}


{#
    Once per dbt invocation, before any model (on-run-start: one thread), what all
    publications share: the published and audit schemas, the publication log, a
    claim row per published model, and the read-only reporting role (var
    reporting_role; empty to skip) with usage on the published schema and nothing
    else. A missing role is created when the build's user may; otherwise the run
    warns (a `campaign-cubes:` line, which orchestrate.py repeats) and publishes
    without the grant. A reserved or privileged role is refused the same way.

    Schemas that exist are not created again: a build role without `create` on the
    database may publish into schemas made for it. Other dbt processes wait on a
    lock of the publication log, which only the build's role reaches. The very
    first run has nothing to lock yet: two first runs may race to create the same
    objects, and the loser of a race retries (`if not exists` then finds them).
#}
{% macro prepare_publication() %}
    {{ return(adapter.dispatch('prepare_publication', 'campaign_cubes')()) }}
{% endmacro %}

{% macro postgres__prepare_publication() %}
    {%- if execute -%}
        {%- set audit_schema = target.schema ~ '_audit' -%}
        {%- set audit = quote_identifier(audit_schema) -%}
        {%- set published = [] -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model'
            and node.config.materialized == 'published_table' and node.schema == target.schema -%}
            {%- do published.append('(' ~ quoted_literal(node.alias) ~ ')') -%}
        {%- endfor -%}
        {%- set create -%}
            for attempt in 1..5 loop
                begin
                    {% for schema in [target.schema, audit_schema] -%}
                    if to_regnamespace({{ quoted_literal(quote_identifier(schema)) }}) is null then
                        create schema {{ quote_identifier(schema) }};
                    end if;
                    {% endfor -%}
                    {{ published_table_log_ddl(audit_schema) }};
                    exit;
                exception when unique_violation or duplicate_schema or duplicate_table then
                    if attempt = 5 then raise; end if;
                end;
            end loop;
        {%- endset -%}
        {% call statement('prepare_publication') -%}
            do {{ published_table_dollar_quoted('begin ' ~ create ~ ' end') }};
            -- self-exclusive, and no conflict with the publications' inserts in the log
            lock table {{ audit }}.publication_log in share update exclusive mode;
            {% if published -%}
            insert into {{ audit }}.publication_claims (model)
            values {{ published | join(', ') }}
            on conflict (model) do nothing;
            {%- endif %}
        {%- endcall %}
        {%- set role = var('reporting_role', '') -%}
        {%- set role = '' if role is none else role | string -%}
        {%- set refusal = published_table_role_refusal(role) if role | length > 0 else none -%}
        {%- if refusal is not none -%}
            {{ exceptions.warn("campaign-cubes: reporting role " ~ role ~ " is refused (" ~ refusal
                ~ "): it is neither created nor granted anything; the aggregates are published without"
                ~ " a reporting grant") }}
        {%- elif role | length > 0 -%}
            {%- set may_create = run_query(
                "select 1 from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)"
            ).rows | length > 0 -%}
            {%- set exists = published_table_role_exists(role) -%}
            {%- if exists or may_create -%}
                {% call statement('prepare_reporting_role') -%}
                    {% if not exists -%}
                    -- the role is cluster-wide: another database's run may create it meanwhile
                    do {{ published_table_dollar_quoted('begin create role ' ~ quote_identifier(role)
                        ~ ' nologin; exception when duplicate_object or unique_violation then null; end') }};
                    {% endif -%}
                    grant usage on schema {{ quote_identifier(target.schema) }} to {{ quote_identifier(role) }};
                {%- endcall %}
            {%- else -%}
                {{ exceptions.warn("campaign-cubes: reporting role " ~ role ~ " does not exist and " ~ target.user
                    ~ " may not create it: the aggregates are published without granting it select") }}
            {%- endif -%}
        {%- endif -%}
        {% do adapter.commit() %}
    {%- endif -%}
{% endmacro %}


{#
    The audit schema's shared tables: the publication log, and one row per
    published model whose lock a build holds from its claim to its commit
    (published_table_claim).
#}
{# `body` as a dollar-quoted string (a DO block's), refused if it could end the quote. #}
{% macro published_table_dollar_quoted(body) %}
    {%- if '$campaign_cubes$' in body -%}
        {{ exceptions.raise_compiler_error("a setting contains '$campaign_cubes$'; nothing was done") }}
    {%- endif -%}
    {{ return('$campaign_cubes$ ' ~ body ~ ' $campaign_cubes$') }}
{% endmacro %}


{% macro published_table_log_ddl(audit_schema) %}
    create table if not exists {{ quote_identifier(audit_schema) }}.publication_log (
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
    );
    create table if not exists {{ quote_identifier(audit_schema) }}.publication_claims (
        model text primary key
    )
{% endmacro %}


{#
    One row of the publication log: `outcome` published, rejected (the audit's
    findings) or stale_source (macros/source_freshness.sql, no candidate built);
    `numbers` as published_table_measure returns them, a missing figure NULL.
#}
{% macro published_table_record(audit_schema, numbers, outcome, findings) %}
    {{ return(adapter.dispatch('published_table_record', 'campaign_cubes')(audit_schema, numbers, outcome, findings)) }}
{% endmacro %}

{% macro postgres__published_table_record(audit_schema, numbers, outcome, findings) %}
    {% call statement('record_publication') -%}
        insert into {{ adapter.quote(audit_schema) }}.publication_log (
            model, invocation_id, outcome, candidate_total, fact_rows,
            published_total_before, duplicate_keys, null_keys, findings
        )
        values (
            {{ quoted_literal(numbers['model']) }}, {{ quoted_literal(invocation_id) }},
            {{ quoted_literal(outcome) }},
            {%- for name in ['candidate_total', 'fact_rows', 'published_total', 'duplicate_keys', 'null_keys'] %}
            {{ numbers.get(name) if numbers.get(name) is not none else 'null' }},
            {%- endfor %}
            {{ quoted_literal(findings) if findings else 'null' }}
        )
    {%- endcall %}
{% endmacro %}


{#
    The Campaign tables behind each cube, for the configured message_center_source
    (the staging models read the same tables): each with its key and the base model
    of its repeated keys (macros/staging.sql, campaign_facts).
#}
{% macro campaign_fact_tables(facts) %}
    {%- set tables = [] -%}
    {%- for fact in campaign_facts().values()
        if fact.cube == facts and fact.read_when in [none, var('message_center_source')] -%}
        {%- do tables.append(fact) -%}
    {%- endfor -%}
    {{ return(tables) }}
{% endmacro %}
