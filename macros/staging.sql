{#
    Helpers shared by the staging models (models/staging/campaign). Only staging
    models read source(); they pass the source relation in.
#}

{#
    One row per key: the copy with the greatest `order_by`. A key seen twice in a
    Campaign table (replicas and exports carry such copies) is counted once.

    Fact tables (keep_keyless): rows whose key is NULL are not duplicates of one
    another; their physical row (`source_row`, see physical_row_id) keeps them
    apart, in the same sorted pass. Lookup tables: a row without a key can never be
    linked to, so it is left out, and deduplicating on the key alone lets the
    planner know the key is unique (it then hash-joins the facts to the lookup
    instead of sorting them for a merge join).
#}
{% macro keep_latest_per_key(relation, key, order_by, keep_keyless=true) %}
    {%- if keep_keyless %}
    select distinct on ({{ key }}, case when {{ key }} is null then source_row end) *
    from {{ relation }}
    order by {{ key }} asc, case when {{ key }} is null then source_row end asc, {{ order_by }}
    {%- else %}
    select distinct on ({{ key }}) *
    from {{ relation }}
    where {{ key }} is not null
    order by {{ key }} asc, {{ order_by }}
    {%- endif %}
{% endmacro %}


{#
    Which physical row of the Campaign table a staged row comes from (ctid; in a
    unit test, whose fixtures are not tables, the row's position).
#}
{% macro physical_row_id() -%}
    {%- if model.resource_type == 'unit_test' -%}row_number() over (){%- else -%}ctid{%- endif -%}
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
{% macro stage_message_center_events(source_relation, key_column, needed) %}
    {#- in a unit test the source is a fixture, never absent -#}
    {%- set absent = execute and not needed and model.resource_type != 'unit_test'
        and load_relation(source_relation) is none -%}
    {%- if absent -%}
        {{ log("campaign-cubes: " ~ source_relation ~ " not found; message_center_source="
            ~ var('message_center_source') ~ " does not read it, staging it as empty", info=True) }}
    {%- endif %}

with

source as (

    {% if absent -%}
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
    {%- else -%}
    -- the physical row keeps apart rows that have no key (see deduplicated)
    select
        *,
        {{ physical_row_id() }} as source_row
    from {{ source_relation }}
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
        mdata as payload_xml,
        source_row
    from source
    -- key 0 is Campaign's placeholder row, not an event
    where {{ key_column }} is distinct from 0

),

deduplicated as (

    {{ keep_latest_per_key(
        'renamed', 'event_id',
        'last_modified_at desc nulls last, event_status_code desc nulls last, created_at desc nulls last'
    ) }}

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
    from deduplicated

)

select * from final
{% endmacro %}
