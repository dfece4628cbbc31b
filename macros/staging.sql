{#
    Helpers shared by the staging models (models/staging/campaign). Only staging
    models read source(); they pass the source relation in.
#}

{#
    Lookup tables (offers, spaces, deliveries): one row per key, the copy with the
    greatest `order_by`. A row without a key can never be linked to, so it is left
    out; deduplicating on the key alone lets the planner know the key is unique (it
    then hash-joins the facts to the lookup instead of sorting them for a merge join).
#}
{% macro keep_latest_per_key(relation, key, order_by) %}
    {{ return(adapter.dispatch('keep_latest_per_key', 'campaign_cubes')(relation, key, order_by)) }}
{% endmacro %}

{#- No `distinct on` elsewhere: the first row of each key by row_number(); the
    model's final CTE lists its columns, so copy_rank goes no further. -#}
{% macro default__keep_latest_per_key(relation, key, order_by) %}
    select ranked.*
    from (
        select
            {{ relation }}.*,
            row_number() over (partition by {{ key }} order by {{ order_by }}) as copy_rank
        from {{ relation }}
        where {{ key }} is not null
    ) as ranked
    where ranked.copy_rank = 1
{% endmacro %}

{% macro postgres__keep_latest_per_key(relation, key, order_by) %}
    select distinct on ({{ key }}) *
    from {{ relation }}
    where {{ key }} is not null
    order by {{ key }} asc, {{ order_by }}
{% endmacro %}


{#
    Fact tables (the staging views): every row whose key the table holds once, and
    of each repeated key (the base models, macros/repeated_keys.sql) the copy with
    the greatest `order_by`, read from the table itself, so a repeated key whose
    copies changed since the base table was refreshed still gives its latest copy.
    A row without a key (NULL) matches no repeated key: it is a fact of its own.
    Only the few repeated keys are sorted, so the aggregate built on this can run in
    parallel workers: each scans its share of the table and leaves out the repeated
    keys with a small hash, and one of them also sorts the repeated keys' copies
    (see one_worker_scan).
#}
{% macro keep_latest_copy(relation, repeats, columns, key, order_by) %}
    {{ return(adapter.dispatch('keep_latest_copy', 'campaign_cubes')(relation, repeats, columns, key, order_by)) }}
{% endmacro %}

{#-
    The same rows elsewhere: the table less its repeated keys (a join with the small
    base table, which Spark broadcasts), and of each repeated key the first copy by
    row_number(), only those few copies being sorted.
-#}
{% macro default__keep_latest_copy(relation, repeats, columns, key, order_by) %}
    select fact.{{ columns | join(', fact.') }}
    from {{ relation }} as fact
    where not exists (
        select 1 from {{ repeats }} as repeated
        where repeated.{{ key }} = fact.{{ key }}
    )

    union all

    select ranked.{{ columns | join(', ranked.') }}
    from (
        select
            fact.{{ columns | join(', fact.') }},
            row_number() over (partition by fact.{{ key }} order by {{ order_by }}) as copy_rank
        from {{ relation }} as fact
        where fact.{{ key }} in (select repeated.{{ key }} from {{ repeats }} as repeated)
    ) as ranked
    where ranked.copy_rank = 1
{% endmacro %}

{% macro postgres__keep_latest_copy(relation, repeats, columns, key, order_by) %}
    select fact.{{ columns | join(', fact.') }}
    from {{ relation }} as fact
    where not exists (
        select from {{ repeats }} as repeated
        where repeated.{{ key }} = fact.{{ key }}
    )

    union all

    (
        select distinct on (fact.{{ key }}) fact.{{ columns | join(', fact.') }}
        from {{ relation }} as fact {{ one_worker_scan(relation) }}
        where fact.{{ key }} in (select repeated.{{ key }} from {{ repeats }} as repeated)
        order by fact.{{ key }} asc, {{ order_by }}
    )
{% endmacro %}


{#
    A read of the whole table that the planner cannot split among parallel workers:
    TABLESAMPLE SYSTEM at 100 percent returns every row of every page (PostgreSQL
    defines the sampling probability as exact at its limits). With a plain scan the
    planner sorts the repeated keys' copies on a Gather Merge, and no aggregate
    above a Gather can run in parallel; with this one, that branch runs whole in one
    worker while the others share the rest (Parallel Append), and the aggregate is
    parallel: measured 16 - 18 s -> 10 s for the Message Center cube at 10 M rows.
    Only tables can be sampled; a view or a foreign table (which load_relation
    does not return) is read plainly. Unit tests override this macro: their
    fixtures are read plainly too.
#}
{% macro one_worker_scan(relation) -%}
    {%- if execute -%}
        {%- set loaded = load_relation(relation) -%}
        {%- if loaded is not none and loaded.is_table -%}tablesample system (100){%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#
    The columns of a Message Center event table that staging reads, after its key,
    with their Campaign types: nmseventhisto, nmsrtevent and nmsbatchevent share
    this layout (an absent one is staged from it as typed NULLs).
#}
{% macro message_center_event_columns() %}
    {{ return([
        ('stype', 'varchar'), ('istatus', 'smallint'), ('iwishedchannel', 'smallint'),
        ('ideliveryid', 'integer'), ('tscreated', 'timestamptz'), ('tsprocessing', 'timestamptz'),
        ('tsprocessed', 'timestamptz'), ('tslastmodified', 'timestamptz'), ('sexternalid', 'varchar'),
        ('sorigin', 'varchar'), ('semail', 'varchar'), ('smobilephone', 'varchar'),
        ('slanguage', 'varchar'), ('scountrycode', 'varchar'), ('mdata', 'text'),
    ]) }}
{% endmacro %}


{#
    The Campaign fact tables, declared once: each with its key, the columns
    staging reads (a Campaign row may be much wider), the order that makes a
    repeated key's latest copy first, the base model of its repeated keys, the
    cube it feeds (published_table's meta.audit.facts) and, for an event table,
    the message_center_source that reads it.
#}
{% macro campaign_facts() %}
    {%- set event_columns = message_center_event_columns() | map('first') | list -%}
    {%- set event_order =
        'fact.tslastmodified desc nulls last, fact.istatus desc nulls last, fact.tscreated desc nulls last' -%}
    {{ return({
        'nmspropositionrcp': {
            'table': 'nmspropositionrcp', 'key': 'ipropositionid', 'cube': 'propositions', 'read_when': none,
            'base': 'base_campaign__proposition_repeated_keys',
            'columns': [
                'ipropositionid', 'iinteractionid', 'iofferid', 'iofferspaceid', 'irecipientid', 'ideliveryid',
                'istatus', 'tsevent', 'tslastmodified', 'dweight', 'irank',
            ],
            'latest_first':
                'fact.tslastmodified desc nulls last, fact.istatus desc nulls last, fact.tsevent desc nulls last',
        },
        'nmseventhisto': {
            'table': 'nmseventhisto', 'key': 'bieventhistoid', 'cube': 'message_center', 'read_when': 'eventhisto',
            'base': 'base_campaign__event_history_repeated_keys',
            'columns': ['bieventhistoid'] + event_columns, 'latest_first': event_order,
        },
        'nmsrtevent': {
            'table': 'nmsrtevent', 'key': 'irteventid', 'cube': 'message_center', 'read_when': 'execution',
            'base': 'base_campaign__realtime_event_repeated_keys',
            'columns': ['irteventid'] + event_columns, 'latest_first': event_order,
        },
        'nmsbatchevent': {
            'table': 'nmsbatchevent', 'key': 'ibatcheventid', 'cube': 'message_center', 'read_when': 'execution',
            'base': 'base_campaign__batch_event_repeated_keys',
            'columns': ['ibatcheventid'] + event_columns, 'latest_first': event_order,
        },
    }) }}
{% endmacro %}


{# The staged rows of a fact table: each key once, of a repeated key the latest copy. #}
{% macro latest_fact_rows(fact, repeats) %}
    {{ return(keep_latest_copy(
        source('campaign', fact.table), repeats, fact.columns, fact.key, fact.latest_first)) }}
{% endmacro %}


{#
    A column that not every Campaign instance has (lookup tables carry
    tslastmodified on most instances, not in every export): the column when the
    table has it, a typed NULL otherwise.
#}
{% macro column_or_null(relation, column_name, data_type) -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name | lower == column_name -%}{%- do present.append(column) -%}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if present -%}{{ column_name }}{%- else -%}null::{{ sql_type(data_type) }}{%- endif -%}
{%- endmacro %}


{#
    The Message Center event tables (nmseventhisto, nmsrtevent, nmsbatchevent)
    share one layout and differ by their key. A table the configured
    message_center_source does not read may be absent (an execution instance has
    no archive, a control instance no queues): it is then staged as empty, and the
    run says so. A table the mode needs must exist.
#}
{% macro message_center_table_absent(source_relation, needed, say=true) %}
    {#- not load_relation: it does not see foreign tables (macros/campaign_source.sql) -#}
    {%- set absent = execute and not needed and not campaign_relation_exists(source_relation) -%}
    {%- if absent and say -%}
        {{ log("campaign-cubes: " ~ source_relation ~ " not found; message_center_source="
            ~ var('message_center_source') ~ " does not read it, staging it as empty", info=True) }}
    {%- endif -%}
    {{ return(absent) }}
{% endmacro %}


{# An absent event table: no rows, with the layout of the ones that exist. #}
{% macro no_message_center_events(key_column) %}
    select
        null::bigint as {{ key_column }}
        {%- for name, data_type in message_center_event_columns() %},
        null::{{ sql_type(data_type) }} as {{ name }}
        {%- endfor %}
    where false
{% endmacro %}


{# The base model of an event table: its repeated keys. #}
{% macro message_center_repeated_keys(fact) %}
    {%- set relation = source('campaign', fact.table) -%}
    {#- the staging model says it, once -#}
    {%- if message_center_table_absent(relation, fact.read_when == var('message_center_source'), say=false) -%}
        select null::bigint as {{ fact.key }}, 0::bigint as copies where false
    {%- else -%}
        {{ repeated_keys(relation, fact.key) }}
    {%- endif -%}
{% endmacro %}


{#
    The rows of an event table its staging model reads: the latest copies, or no
    rows when the table is absent and the configured message_center_source does
    not read it.
#}
{% macro message_center_events(fact, repeats) %}
    {%- set relation = source('campaign', fact.table) -%}
    {%- if message_center_table_absent(relation, fact.read_when == var('message_center_source')) -%}
        {{ return(no_message_center_events(fact.key)) }}
    {%- endif -%}
    {{ return(latest_fact_rows(fact, repeats)) }}
{% endmacro %}
