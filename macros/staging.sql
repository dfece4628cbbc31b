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
    The columns of a Campaign fact table that staging reads (a Campaign row may be
    much wider).
#}
{% macro campaign_fact_columns(table) %}
    {%- set event_columns = message_center_event_columns() | map('first') | list -%}
    {{ return({
        'nmspropositionrcp': [
            'ipropositionid', 'iinteractionid', 'iofferid', 'iofferspaceid', 'irecipientid', 'ideliveryid',
            'istatus', 'tsevent', 'tslastmodified', 'dweight', 'irank',
        ],
        'nmseventhisto': ['bieventhistoid'] + event_columns,
        'nmsrtevent': ['irteventid'] + event_columns,
        'nmsbatchevent': ['ibatcheventid'] + event_columns,
    }[table]) }}
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
    {%- if present -%}{{ column_name }}{%- else -%}null::{{ data_type }}{%- endif -%}
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
        null::{{ data_type }} as {{ name }}
        {%- endfor %}
    where false
{% endmacro %}


{# The base model of an event table: its repeated keys. #}
{% macro message_center_repeated_keys(source_relation, key_column, needed) %}
    {#- the staging model says it, once -#}
    {%- if message_center_table_absent(source_relation, needed, say=false) -%}
        select null::bigint as {{ key_column }}, 0::bigint as copies where false
    {%- else -%}
        {{ repeated_keys(source_relation, key_column) }}
    {%- endif -%}
{% endmacro %}


{# The staging model of an event table: one row per event, renamed. #}
{% macro stage_message_center_events(table, source_relation, repeats, key_column, needed) %}

with

source as (

    {% if message_center_table_absent(source_relation, needed) -%}
    {{ no_message_center_events(key_column) }}
    {%- else -%}
    -- each key once: of a key held more than once, the latest copy
    {{ keep_latest_copy(
        source_relation, repeats, campaign_fact_columns(table), key_column,
        'fact.tslastmodified desc nulls last, fact.istatus desc nulls last, fact.tscreated desc nulls last'
    ) }}
    {%- endif %}

),

renamed as (

    select
        {{ key_column }}::bigint as event_id,
        stype::text as event_type,
        istatus::smallint as event_status_code,
        iwishedchannel::smallint as wished_channel_code,
        ideliveryid::integer as delivery_id,
        tscreated as created_at,
        tsprocessing as processing_started_at,
        tsprocessed as processed_at,
        tslastmodified as last_modified_at,
        sexternalid::text as external_id,
        sorigin::text as origin,
        semail::text as email,
        smobilephone::text as mobile_phone,
        slanguage::text as language_code,
        scountrycode::text as country_code,
        mdata as payload_xml
    from source
    -- key 0 is Campaign's placeholder row, not an event
    where {{ key_column }} is distinct from 0

),

final as (

    select
        event_id,
        event_type,
        event_status_code,
        wished_channel_code,
        delivery_id,
        created_at,
        processing_started_at,
        processed_at,
        last_modified_at,
        external_id,
        origin,
        email,
        mobile_phone,
        language_code,
        country_code,
        payload_xml
    from renamed

)

select * from final
{% endmacro %}
