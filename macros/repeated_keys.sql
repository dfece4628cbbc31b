{#
    The repeated keys of the Campaign fact tables (the base models): the keys a
    table holds more than once (replicas and exports carry such copies). The
    staging view of the table keeps the latest copy of each and passes every other
    row through unsorted (macros/staging.sql).

    Each publication refreshes the base tables of its cube inside its own
    transaction (macros/published_table.sql), in the snapshot its aggregate reads:
    a key Campaign duplicates while the job runs is then never counted twice, and
    the same pass counts the fact rows the audit reconciles with. A dbt run that
    builds a base model without its publication fills the table itself.
#}


{#
    One sort of a fact table's keys: a row per repeated key with its number of
    copies, and one last row (all_rows) counting every row of the table but
    Campaign's placeholder (key 0), rows without a key included. Sorting beats the
    hash of millions of distinct keys the planner would choose (key_sort_settings).
    A table whose key cannot repeat is not sorted, only counted (unique_key_type).
#}
{% macro key_census(relation, key) %}
    {%- if campaign_source_dsn() -%}{{ return(remote_key_census(relation, key)) }}{%- endif %}
    {%- set key_type = unique_key_type(relation, key) -%}
    {%- if key_type -%}{{ return(unique_key_census(relation, key, key_type)) }}{%- endif %}
    select
        {{ key }},
        count(*) as copies,
        grouping({{ key }}) = 1 as all_rows
    from {{ relation }}
    -- key 0 is Campaign's placeholder row, never data
    where {{ key }} is distinct from 0
    group by grouping sets (({{ key }}), ())
    -- a NULL key is not repeated: each such row is a fact of its own
    having count(*) > 1 and {{ key }} is not null or grouping({{ key }}) = 1
{% endmacro %}


{#
    The same census of a linked Campaign table (macros/campaign_source.sql), in
    two queries that postgres_fdw sends whole to the Campaign server (it cannot
    send grouping sets): only the repeated keys and one count cross the network,
    not every key. Both read the remote snapshot of the local transaction.
#}
{% macro remote_key_census(relation, key) %}
    select
        {{ key }},
        count(*) as copies,
        false as all_rows
    from {{ relation }}
    where {{ key }} is distinct from 0 and {{ key }} is not null
    group by {{ key }}
    having count(*) > 1

    union all

    select
        null as {{ key }},
        count(*) as copies,
        true as all_rows
    from {{ relation }}
    where {{ key }} is distinct from 0
{% endmacro %}


{#
    The census of a table whose key cannot repeat (unique_key_type): no repeated
    key, and the count of its rows without a sort (a parallel scan).
#}
{% macro unique_key_census(relation, key, key_type) %}
    select
        null::{{ key_type }} as {{ key }},
        count(*) as copies,
        true as all_rows
    from {{ relation }}
    where {{ key }} is distinct from 0
{% endmacro %}


{#
    The data type of `key` when PostgreSQL guarantees that no value of it repeats
    in `relation`, else none. The guarantee is a unique index (a primary key has
    one) on exactly that column: valid, checked at once (not deferrable), on the
    whole table (no predicate), and not on a table with inheritance children the
    index does not cover. Several NULL keys may coexist under a unique index: each
    is a fact of its own anyway. Asked at run time, inside the transaction that
    reads the table: a catalog query sees the catalog in the transaction's own
    snapshot (an index created later is not seen, one dropped later still is), so
    in a publication the answer holds for exactly the rows the aggregate reads.
    Only in the build's own database: a linked table (CAMPAIGN_SOURCE_DSN) carries
    no index, and its census stays the sort (remote_key_census). Elsewhere (Spark's
    Parquet tables) no index guarantees anything: none.
#}
{% macro unique_key_type(relation, key) %}
    {{ return(adapter.dispatch('unique_key_type', 'campaign_cubes')(relation, key)) }}
{% endmacro %}

{% macro default__unique_key_type(relation, key) %}
    {{ return(none) }}
{% endmacro %}

{% macro postgres__unique_key_type(relation, key) %}
    {%- if not execute or campaign_source_dsn() -%}{{ return(none) }}{%- endif -%}
    {%- set name = adapter.quote(relation.schema) ~ '.' ~ adapter.quote(relation.identifier) -%}
    {%- set found = run_query(
        "select format_type(a.atttypid, a.atttypmod)"
        ~ " from pg_index as i"
        ~ " join pg_class as c on c.oid = i.indrelid"
        ~ " join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]"
        ~ " where i.indrelid = to_regclass(" ~ quoted_literal(name) ~ ")"
        ~ " and i.indisunique and i.indisvalid and i.indimmediate"
        ~ " and i.indpred is null and i.indexprs is null and i.indnkeyatts = 1"
        ~ " and a.attname = " ~ quoted_literal(key)
        ~ " and (c.relkind = 'p' or not c.relhassubclass)"
        ~ " limit 1"
    ) -%}
    {{ return(found.rows[0][0] if found.rows | length > 0 else none) }}
{% endmacro %}


{# A base model: the repeated keys of one Campaign table. #}
{% macro repeated_keys(relation, key) %}
    select
        {{ key }},
        copies
    from ({{ key_census(relation, key) }}) as census
    where not all_rows
{% endmacro %}


{#
    Session settings for a key sort, local to the transaction: sort rather than
    hash (a hash of 10 M distinct keys spills to disk), let the workers pass every
    key on (the planner prices each one), and no JIT (compiling a key sort costs
    more than it saves). `reset` puts them back for the statements that follow.
#}
{% macro key_sort_settings(reset=false) %}
    {{ return(adapter.dispatch('key_sort_settings', 'campaign_cubes')(reset)) }}
{% endmacro %}

{#- PostgreSQL's planner settings; other engines have none to give -#}
{% macro default__key_sort_settings(reset=false) %}
{% endmacro %}

{% macro postgres__key_sort_settings(reset=false) %}
    {%- for name, value in [('enable_hashagg', 'off'), ('parallel_tuple_cost', '0'), ('jit', 'off')] -%}
        set local {{ name }} = {{ 'default' if reset else value }};
    {% endfor -%}
{% endmacro %}


{#
    The base models' materialization: an unlogged table refreshed in place (delete
    + insert, so the staging views built on it stay), its rows computed in parallel
    into a temporary table first (PostgreSQL never runs `insert ... select` in
    parallel). When a publication selected in the same dbt invocation refreshes
    the table in its own transaction, the build only makes sure the table exists:
    the keys are then sorted once per run, not twice.
#}
{% materialization repeated_keys, adapter='postgres' %}

    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set publisher = repeated_keys_publisher(model.name) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if existing_relation is not none and not repeated_keys_same_shape(existing_relation, sql) -%}
        {#- other columns than the model now produces: the staging views on it go too; dbt rebuilds them -#}
        {% do adapter.drop_relation(existing_relation) %}
        {%- set existing_relation = none -%}
    {%- endif -%}
    {%- if existing_relation is none -%}
        {% call statement('create_repeated_keys') -%}
            create unlogged table {{ target_relation }} as {{ sql }} with no data
        {%- endcall %}
    {%- endif -%}

    {%- if publisher -%}
        {#- not a "campaign-cubes:" message: orchestrate.py reports those as warnings -#}
        {{ log(model.name ~ " is filled by the publication of " ~ publisher
            ~ ", in the snapshot its aggregate reads", info=True) }}
        {% call statement('main') -%}
            select 1
        {%- endcall %}
    {%- else -%}
        {% call statement('main') -%}
            create temporary table repeated_keys__fresh on commit drop as {{ sql }};
            delete from {{ target_relation }};
            insert into {{ target_relation }} select * from repeated_keys__fresh
        {%- endcall %}
    {%- endif -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.commit() %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{% macro repeated_keys_same_shape(relation, sql) %}
    {%- set table_columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- set model_columns = get_columns_in_query(sql) | map('lower') | list -%}
    {{ return(relation.is_table and table_columns == model_columns) }}
{% endmacro %}


{# The published_table model selected in this invocation that refreshes a base model, if any. #}
{% macro repeated_keys_publisher(base_model) %}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.unique_id in selected_resources
        and node.config.materialized == 'published_table' -%}
        {%- set facts = node.config.get('meta', {}).get('audit', {}).get('facts') -%}
        {%- if facts and base_model in campaign_fact_tables(facts) | map(attribute='base') -%}
            {{ return(node.name) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}


{#
    Inside a publication's transaction: refreshes the base tables of the cube's
    fact tables in its snapshot, and returns the fact rows the aggregate must
    count: every row but the placeholder, a repeated key once.
#}
{% macro refresh_repeated_keys(facts) %}
    {{ return(adapter.dispatch('refresh_repeated_keys', 'campaign_cubes')(facts)) }}
{% endmacro %}

{% macro postgres__refresh_repeated_keys(facts) %}
    {%- set fact_rows = [] -%}
    {%- for fact in campaign_fact_tables(facts) -%}
        {%- set base_node = graph.nodes['model.' ~ project_name ~ '.' ~ fact.base] -%}
        {%- set base = api.Relation.create(database=base_node.database, schema=base_node.schema,
            identifier=base_node.alias, type='table') -%}
        {%- if unique_key_type(source('campaign', fact.table), fact.key) -%}
            {{ log(model.name ~ ": " ~ fact.table ~ " has a unique index on " ~ fact.key
                ~ ": no key can repeat, its rows are counted without a key sort", info=True) }}
        {%- endif %}
        {% call statement('repeated_keys_' ~ fact.table, fetch_result=True) -%}
            {{ key_sort_settings() }}
            create temporary table repeated_keys__census on commit drop as
            {{ key_census(source('campaign', fact.table), fact.key) }};
            {{ key_sort_settings(reset=true) }}
            delete from {{ base }};
            insert into {{ base }} ({{ fact.key }}, copies)
            select {{ fact.key }}, copies from repeated_keys__census where not all_rows;
            select
                coalesce(sum(copies) filter (where all_rows), 0)
                - coalesce(sum(copies - 1) filter (where not all_rows), 0) as fact_rows
            from repeated_keys__census
        {%- endcall %}
        {%- do fact_rows.append(load_result('repeated_keys_' ~ fact.table).table.columns[0].values()[0]) -%}
        {% call statement('repeated_keys_' ~ fact.table ~ '_done') -%}
            drop table repeated_keys__census
        {%- endcall %}
    {%- endfor -%}
    {{ return(fact_rows | sum) }}
{% endmacro %}


{#
    Spark: the base models are Parquet tables, rewritten whole (`insert overwrite`,
    so the staging views on them stay). A publication selected in the same run
    refreshes them itself, as on PostgreSQL.
#}
{% materialization repeated_keys, adapter='spark' %}

    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set publisher = repeated_keys_publisher(model.name) -%}

    {{ run_hooks(pre_hooks) }}
    {%- if existing_relation is not none and not repeated_keys_same_shape(existing_relation, sql) -%}
        {% do adapter.drop_relation(existing_relation) %}
        {%- set existing_relation = none -%}
    {%- endif -%}
    {%- if existing_relation is none -%}
        {% call statement('create_repeated_keys') -%}
            create table {{ target_relation }} using parquet as select * from ({{ sql }}) as census limit 0
        {%- endcall %}
    {%- endif -%}
    {%- if publisher -%}
        {{ log(model.name ~ " is filled by the publication of " ~ publisher, info=True) }}
        {% call statement('main') -%}
            select 1
        {%- endcall %}
    {%- else -%}
        {% call statement('main') -%}
            insert overwrite table {{ target_relation }} {{ sql }}
        {%- endcall %}
    {%- endif -%}
    {{ run_hooks(post_hooks) }}
    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{#
    Spark: the census of each fact table is cached once, then gives the base
    table its rows and the audit its fact rows. The landed tables do not change
    while a build reads them (land replaces a table only when a copy is
    complete, and is not run during builds: docs/spark.md).
#}
{% macro spark__refresh_repeated_keys(facts) %}
    {%- set fact_rows = [] -%}
    {%- for fact in campaign_fact_tables(facts) -%}
        {%- set base_node = graph.nodes['model.' ~ project_name ~ '.' ~ fact.base] -%}
        {%- set base = api.Relation.create(schema=base_node.schema, identifier=base_node.alias, type='table') -%}
        {% do run_query('cache table repeated_keys__census as ' ~ key_census(source('campaign', fact.table), fact.key)) %}
        {% do run_query('insert overwrite table ' ~ base ~ ' select ' ~ fact.key
            ~ ', copies from repeated_keys__census where not all_rows') %}
        {%- do fact_rows.append(run_query(
            "select coalesce(sum(copies) filter (where all_rows), 0)"
            ~ " - coalesce(sum(copies - 1) filter (where not all_rows), 0) from repeated_keys__census"
        ).columns[0].values()[0]) -%}
        {% do run_query('uncache table repeated_keys__census') %}
        {% do run_query('drop view repeated_keys__census') %}
    {%- endfor -%}
    {{ return(fact_rows | sum) }}
{% endmacro %}
