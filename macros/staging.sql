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
    Fact tables, step 1 (the base models, tables): of each key the Campaign table
    holds more than once (replicas and exports carry such copies), which physical
    row is the copy to keep: the greatest `order_by`. Few keys repeat; finding them
    takes one sort of the keys alone, much faster than the hash of millions of
    distinct keys the planner would choose (the base models set enable_hashagg off).
    The keys are found once (materialized), then their rows picked out.
#}
{% macro kept_copies_of_repeated_keys(relation, key, order_by) %}
with

-- read twice, scanned twice: materializing a whole Campaign table would cost more
source as not materialized (

    select
        *,
        {{ physical_row_id() }} as source_row
    from {{ relation }}

),

repeated_keys as materialized (

    select {{ key }}
    from source
    -- key 0 is Campaign's placeholder row, never data
    where {{ key }} <> 0
    group by {{ key }}
    having count(*) > 1

),

kept_copies as (

    select distinct on ({{ key }})
        {{ key }},
        source_row as kept_row
    from source
    where {{ key }} in (select repeated_keys.{{ key }} from repeated_keys)
    order by {{ key }} asc, {{ order_by }}

)

select * from kept_copies
{% endmacro %}


{#
    Fact tables, step 2 (the staging views): every row whose key the table holds
    once, and of a repeated key only the row step 1 kept. A row without a key
    (NULL) matches no repeated key: it is a fact of its own. Nothing is sorted here,
    so the aggregates built on it run in parallel workers, each scanning its share
    of the table and joining the small step-1 table by hash. If Campaign's rows
    changed since step 1 (a kept row updated or deleted, a key newly repeated), the
    key is lost or counted twice and the publication audit refuses the aggregate:
    rebuild with the upstream models (`+` selection, as the scheduled jobs do).
#}
{% macro drop_other_copies(source_cte, repeats, key) %}
    select {{ source_cte }}.*
    from {{ source_cte }}
    -- an anti-join, which the planner estimates well (it misjudged a left join
    -- filtered by `is null or`, to one row, and then planned serially)
    where not exists (
        select from {{ repeats }} as repeated
        where
            repeated.{{ key }} = {{ source_cte }}.{{ key }}
            and repeated.kept_row <> {{ source_cte }}.source_row
    )
{% endmacro %}


{#
    Which physical row of the Campaign table a row comes from: its ctid (in a unit
    test, whose fixtures are not tables, a ctid made of the row's position).
#}
{% macro physical_row_id() -%}
    {%- if model.resource_type == 'unit_test' -%}
        format('(0,%s)', row_number() over ())::tid
    {%- else -%}
        ctid
    {%- endif -%}
{%- endmacro %}


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
    {#- in a unit test the source is a fixture, never absent -#}
    {%- set absent = execute and not needed and model.resource_type != 'unit_test'
        and load_relation(source_relation) is none -%}
    {%- if absent and say -%}
        {{ log("campaign-cubes: " ~ source_relation ~ " not found; message_center_source="
            ~ var('message_center_source') ~ " does not read it, staging it as empty", info=True) }}
    {%- endif -%}
    {{ return(absent) }}
{% endmacro %}


{# An absent event table: no rows, with the layout of the ones that exist. #}
{% macro no_message_center_events(key_column) %}
    select
        null::bigint as {{ key_column }},
        null::varchar as stype,
        null::smallint as istatus,
        null::smallint as iwishedchannel,
        null::integer as ideliveryid,
        null::timestamptz as tscreated,
        null::timestamptz as tsprocessing,
        null::timestamptz as tsprocessed,
        null::timestamptz as tslastmodified,
        null::varchar as sexternalid,
        null::varchar as sorigin,
        null::varchar as semail,
        null::varchar as smobilephone,
        null::varchar as slanguage,
        null::varchar as scountrycode,
        null::text as mdata,
        null::tid as source_row
    where false
{% endmacro %}


{# The base model of an event table: the row kept of each repeated key. #}
{% macro message_center_kept_copies(source_relation, key_column, needed) %}
    {#- the staging model says it, once -#}
    {%- if message_center_table_absent(source_relation, needed, say=false) -%}
        select null::bigint as {{ key_column }}, null::tid as kept_row where false
    {%- else -%}
        {{ kept_copies_of_repeated_keys(
            source_relation, key_column,
            'tslastmodified desc nulls last, istatus desc nulls last, tscreated desc nulls last'
        ) }}
    {%- endif -%}
{% endmacro %}


{# The staging model of an event table: one row per event, renamed. #}
{% macro stage_message_center_events(source_relation, repeats, key_column, needed) %}

with

source as (

    {% if message_center_table_absent(source_relation, needed) -%}
    {{ no_message_center_events(key_column) }}
    {%- else -%}
    select
        *,
        {{ physical_row_id() }} as source_row
    from {{ source_relation }}
    {%- endif %}

),

-- each key once: of a key held more than once, the copy the base model kept
deduplicated as (

    {{ drop_other_copies('source', repeats, key_column) }}

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
    from deduplicated
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
