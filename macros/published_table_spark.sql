{#
    published_table on Spark (docs/spark.md). Parquet tables have no transactions
    and dbt-spark's own materializations leave a missing or empty table when they
    fail half-way, so readers never read a table that is being written:

      0. a cube whose fact tables are too old is refused before anything is built
         (var stale_source_after, macros/source_freshness.sql); the repeated keys of
         the cube's fact tables are refreshed and the fact rows counted
         (spark__refresh_repeated_keys);
      1. the new aggregate is built as a new versioned table,
         <schema>_audit.<name>__v<UTC time>, which nobody reads yet;
      2. it is audited as on PostgreSQL (grain, keys, reconciliation, volume guard:
         published_table_measure). A refusal renames it <name>__rejected, records
         it and fails the node: the view still shows the previous version;
      3. publication is one metastore operation, `alter view <schema>.<name> as`
         over the new version (`create view` the first time): readers see the old
         version or the new one, never a part, never no view (Spark's `create or
         replace view` drops the view, then creates it); views and queries built on
         the published name keep working (Spark resolves a view by name when it is
         read);
      4. the outcome is recorded in <schema>_audit.publication_log, and versions
         older than the previous one are dropped. The previous one stays until the
         next publication, so that a query that started on it can finish.

    Spark has no locks to keep two builds of one aggregate apart: the scheduler's
    job lock does (docs/spark.md, run history and locks).
#}
{% materialization published_table, adapter='spark' %}

    {%- set audit = config.get('meta', {}).get('audit') -%}
    {%- if not audit -%}
        {{ exceptions.raise_compiler_error(
            "published_table needs meta.audit (grain, count_measure, facts) on " ~ model.name) }}
    {%- endif -%}
    {%- set audit_schema = this.schema ~ '_audit' -%}
    {%- set view_relation = this.incorporate(type='view') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- if existing_relation is not none and not existing_relation.is_view -%}
        {{ exceptions.raise_compiler_error(
            existing_relation ~ " is a table; on Spark the published name is a view over audited versions."
            ~ " Nothing was built: drop or rename that table first.") }}
    {%- endif -%}
    {%- set stamp = modules.datetime.datetime.utcnow().strftime('%Y%m%d%H%M%S%f') -%}
    {%- set version = api.Relation.create(
        schema=audit_schema, identifier=this.identifier ~ '__v' ~ stamp, type='table') -%}
    {%- set rejected = api.Relation.create(
        schema=audit_schema, identifier=this.identifier ~ '__rejected', type='table') -%}

    {{ run_hooks(pre_hooks) }}

    {#- 0. facts too old to publish: nothing is built; then the facts' repeated keys and rows -#}
    {% do refuse_stale_source(audit, audit_schema, 'view ' ~ view_relation) %}
    {%- set started = published_table_step(this.identifier ~ ": key pass (repeated keys, fact rows)") -%}
    {%- set fact_rows = refresh_repeated_keys(audit['facts']) -%}
    {%- set started = published_table_step(this.identifier ~ ": key pass done, " ~ fact_rows ~ " fact rows", started) -%}

    {#- 1. the new version -#}
    {% call statement('main') -%}
        create table {{ version }} using parquet as {{ sql }}
    {%- endcall %}
    {%- set columns = adapter.get_columns_in_relation(version) | map(attribute='name') | map('lower') | list -%}
    {%- set declared = model.columns.keys() | map('lower') | list -%}
    {%- if config.get('contract').enforced and columns != declared -%}
        {% do adapter.drop_relation(version) %}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ " was NOT published: its columns (" ~ columns | join(', ')
            ~ ") are not the contract's (" ~ declared | join(', ') ~ ")") }}
    {%- endif -%}
    {%- set started = published_table_step(this.identifier ~ ": candidate built in " ~ version, started) -%}

    {#- 2. the audit -#}
    {%- set numbers = published_table_measure(version, existing_relation, audit, fact_rows) -%}
    {%- set findings = published_table_findings(numbers) -%}
    {%- set started = published_table_step(this.identifier ~ ": audit " ~ ("refused the candidate" if findings
        else "passed (" ~ numbers['candidate_total'] ~ " " ~ numbers['measure'] ~ ")"), started) -%}
    {%- if findings -%}
        {% do adapter.drop_relation(rejected) %}
        {% do adapter.rename_relation(version, rejected) %}
        {% do published_table_record(audit_schema, numbers, 'rejected', findings | join('; ')) %}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ " was NOT published: " ~ findings | join('; ')
            ~ ". The published view " ~ view_relation ~ " is unchanged; the rejected aggregate is kept in "
            ~ rejected ~ " for inspection."
        ) }}
    {%- endif -%}

    {#- 3. publication: one update of the view in the metastore (`create or replace
        view` would drop it, then create it: a reader in between finds no view) -#}
    {% call statement('publish') -%}
        {{ 'alter' if existing_relation is not none else 'create' }} view {{ view_relation }} as
        select {{ columns | join(', ') }} from {{ version }}
    {%- endcall %}
    {%- set started = published_table_step(this.identifier ~ ": published " ~ view_relation ~ " over " ~ version,
        started) -%}

    {#- 4. the record; versions before the previous one, and an obsolete rejection, go -#}
    {% do published_table_record(audit_schema, numbers, 'published', none) %}
    {% do adapter.drop_relation(rejected) %}
    {% do published_table_drop_old_versions(audit_schema, this.identifier, version.identifier) %}

    {{ run_hooks(post_hooks) }}
    {{ return({'relations': [view_relation]}) }}

{% endmaterialization %}


{# The versions of `name` older than the current one and the one before it. #}
{% macro published_table_drop_old_versions(audit_schema, name, current) %}
    {%- set versions = [] -%}
    {%- for row in run_query("show tables in " ~ audit_schema ~ " like " ~ spark_string(name ~ "__v*")) -%}
        {%- if modules.re.fullmatch(name ~ '__v[0-9]{20}', row['tableName']) and row['tableName'] <= current -%}
            {%- do versions.append(row['tableName']) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for identifier in (versions | sort)[:-2] -%}
        {% do adapter.drop_relation(api.Relation.create(schema=audit_schema, identifier=identifier, type='table')) %}
    {%- endfor -%}
{% endmacro %}


{#
    Once per dbt invocation: the published and audit databases and the
    publication log. No reporting role: on Spark, access is the catalog's business
    (Unity Catalog, Ranger, the file system's permissions).
#}
{% macro spark__prepare_publication() %}
    {%- if execute -%}
        {%- set audit_schema = target.schema ~ '_audit' -%}
        {% do run_query('create database if not exists ' ~ target.schema) %}
        {% do run_query('create database if not exists ' ~ audit_schema) %}
        {% do run_query(published_table_log_spark_ddl(audit_schema)) %}
    {%- endif -%}
{% endmacro %}

{% macro published_table_log_spark_ddl(audit_schema) %}
    create table if not exists {{ audit_schema }}.publication_log (
        model string,
        invocation_id string,
        recorded_at timestamp,
        outcome string,
        candidate_total bigint,
        fact_rows bigint,
        published_total_before bigint,
        duplicate_keys bigint,
        null_keys bigint,
        findings string
    ) using parquet
{% endmacro %}


{% macro spark__published_table_record(audit_schema, numbers, outcome, findings) %}
    {%- set counts = [] -%}
    {%- for name in ['candidate_total', 'fact_rows', 'published_total', 'duplicate_keys', 'null_keys'] -%}
        {%- do counts.append('null' if numbers.get(name) is none else numbers[name] | string) -%}
    {%- endfor -%}
    {% call statement('record_publication') -%}
        insert into {{ audit_schema }}.publication_log
        select
            {{ spark_string(numbers['model']) }}, {{ spark_string(invocation_id) }}, current_timestamp(),
            {{ spark_string(outcome) }}, {{ counts | join(', ') }},
            {{ spark_string(findings) if findings else 'null' }}
    {%- endcall %}
{% endmacro %}
