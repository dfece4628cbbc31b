{#
    Timestamps and weights as the cubes read them. Campaign rows may hold values no
    report can show: 'infinity', '-infinity', dates before year 1 or after 9999,
    NaN or infinite weights. Such a row is still counted, with an explicit member:
    no date, no processing time, no weight (NULL). These macros are the only place
    that turns Campaign values into dates, durations and weights, so that the
    models, the warning test (tests/generic/values_in_range.sql) and a port to
    another engine share one rule.

    The supported range: calendar dates 0001-01-01 .. 9999-12-31 in the reporting
    zone (what Python's datetime, and so the report and most BI tools, can read).
    `at time zone` is only applied to instants within a day of that range in UTC,
    so that it can never overflow PostgreSQL's own range.
#}

{# The reporting zone as a SQL literal: a setting is user input, never pasted raw. #}
{% macro reporting_zone() -%}
    {{ quoted_literal(var('reporting_timezone')) }}
{%- endmacro %}


{#
    The calendar day of a timestamptz in the reporting zone; NULL when the timestamp
    is NULL, not finite, or its day falls outside 0001-01-01 .. 9999-12-31.
#}
{% macro local_date(ts_column) -%}
    {{ return(adapter.dispatch('local_date', 'campaign_cubes')(ts_column)) }}
{%- endmacro %}

{% macro default__local_date(ts_column) -%}
    -- a port refines the range's first and last days with its engine's zone rules
    case
        when {{ ts_column }} >= timestamp '0001-01-02 00:00:00' and {{ ts_column }} < timestamp '9999-12-31 00:00:00'
            then cast(from_utc_timestamp({{ ts_column }}, {{ reporting_zone() }}) as date)
    end
{%- endmacro %}

{% macro postgres__local_date(ts_column) -%}
    case
        -- the common case: any zone's day of these instants is within the range
        when
            {{ ts_column }} >= timestamptz '0001-01-02 00:00:00+00'
            and {{ ts_column }} < timestamptz '9999-12-31 00:00:00+00'
            then ({{ ts_column }} at time zone {{ reporting_zone() }})::date
        -- within a day of the range's ends, the zone's offset decides
        when
            {{ ts_column }} >= timestamptz '0001-12-31 00:00:00+00 BC'
            and {{ ts_column }} < timestamptz '10000-01-02 00:00:00+00'
            then case
                when ({{ ts_column }} at time zone {{ reporting_zone() }})::date
                    between date '0001-01-01' and date '9999-12-31'
                    then ({{ ts_column }} at time zone {{ reporting_zone() }})::date
            end
    end
{%- endmacro %}


{#
    True when local_date(ts_column) is not NULL. The instants whose day is in the
    range in any zone are decided without converting them: the check then costs two
    comparisons per row instead of a zone conversion (measured 2.3 s -> 1.2 s over
    10 M propositions).
#}
{% macro has_local_date(ts_column) -%}
    ({{ ts_column }} >= {{ instant_literal('0001-01-02 00:00:00') }}
    and {{ ts_column }} < {{ instant_literal('9999-12-31 00:00:00') }}
    or {{ local_date(ts_column) }} is not null)
{%- endmacro %}


{# A UTC instant, e.g. '2026-01-01 00:00:00', as a literal of the engine's instant type. #}
{% macro instant_literal(utc_text) -%}
    {{ return(adapter.dispatch('instant_literal', 'campaign_cubes')(utc_text)) }}
{%- endmacro %}

{#- Spark's timestamp is an instant read in the session zone, which the spark target pins to UTC -#}
{% macro default__instant_literal(utc_text) -%}
    timestamp '{{ utc_text }}'
{%- endmacro %}

{% macro postgres__instant_literal(utc_text) -%}
    timestamptz '{{ utc_text }}+00'
{%- endmacro %}


{#
    Seconds from `start_column` to `end_column` (exact, numeric); NULL unless both
    are within 0001-01-01 .. 9999-12-31 UTC (an infinite end has no duration, and
    farther values could overflow an interval).
#}
{% macro seconds_between(start_column, end_column) -%}
    {{ return(adapter.dispatch('seconds_between', 'campaign_cubes')(start_column, end_column)) }}
{%- endmacro %}

{#- exact as PostgreSQL's numeric epoch: microseconds, then seconds with 6 decimals (Spark) -#}
{% macro default__seconds_between(start_column, end_column) -%}
    case
        when {{ supported_instant(start_column) }} and {{ supported_instant(end_column) }}
            then cast(unix_micros({{ end_column }}) - unix_micros({{ start_column }}) as decimal(20, 0)) / 1000000
    end
{%- endmacro %}

{% macro postgres__seconds_between(start_column, end_column) -%}
    case
        when {{ supported_instant(start_column) }} and {{ supported_instant(end_column) }}
            then extract(epoch from {{ end_column }} - {{ start_column }})
    end
{%- endmacro %}


{# The longest of a group's durations: max(seconds_between(...)), as an aggregate. #}
{% macro max_seconds_between(start_column, end_column) -%}
    {{ return(adapter.dispatch('max_seconds_between', 'campaign_cubes')(start_column, end_column)) }}
{%- endmacro %}

{% macro default__max_seconds_between(start_column, end_column) -%}
    max({{ seconds_between(start_column, end_column) }})
{%- endmacro %}

{#-
    The longest interval, then its seconds once per group: comparing intervals costs
    less than a numeric epoch per row (Message Center candidate at 10 M: 1 - 3 s
    less), and PostgreSQL orders intervals by their length, so the result is the same.
-#}
{% macro postgres__max_seconds_between(start_column, end_column) -%}
    extract(epoch from max(case
        when {{ supported_instant(start_column) }} and {{ supported_instant(end_column) }}
            then {{ end_column }} - {{ start_column }}
    end))
{%- endmacro %}


{# True when a timestamptz lies within 0001-01-01 .. 9999-12-31 UTC (so: is finite). #}
{% macro supported_instant(ts_column) -%}
    {{ return(adapter.dispatch('supported_instant', 'campaign_cubes')(ts_column)) }}
{%- endmacro %}

{#
    Elsewhere timestamps end where the range does (Spark's): `land` brings
    PostgreSQL's infinite and farther values as the range's first and last
    microsecond (campaign_cubes/land.py), which are therefore not supported.
#}
{% macro default__supported_instant(ts_column) -%}
    ({{ ts_column }} > timestamp '0001-01-01 00:00:00'
    and {{ ts_column }} < timestamp '9999-12-31 23:59:59.999999')
{%- endmacro %}

{% macro postgres__supported_instant(ts_column) -%}
    ({{ ts_column }} >= timestamptz '0001-01-01 00:00:00+00'
    and {{ ts_column }} < timestamptz '10000-01-01 00:00:00+00')
{%- endmacro %}


{#
    A weight the sums can take: NULL when NaN, infinite, or of magnitude 1e300 or
    more (such values are no engine's weight, and adding up a few of them would
    overflow double precision, which PostgreSQL reports as an error).
#}
{% macro finite_weight(value_column) -%}
    case when abs({{ value_column }}) < 1e300 then {{ value_column }} end
{%- endmacro %}


{#
    Campaign's local-time storage (var campaign_database_timezone, Campaign's
    WdbcTimeZone option). A Campaign timestamp column of type `timestamp without
    time zone` holds wall-clock times in that zone: `(ts at time zone <zone>)` gives
    the instant. PostgreSQL's rule for the wall times a DST change disturbs: one
    that occurs twice (autumn) is read as standard time, the later instant; one
    that never occurs (the spring gap) is read with the offset in force before the
    gap, so 02:30 in Paris on a spring-forward day is 03:30 summer time. A
    timestamptz column is an instant already and ignores the var. Values beyond a
    day of 0001-01-01 .. 9999-12-31 become -infinity / infinity, so that the
    conversion never overflows and the row gets no date like any other
    out-of-range one.

    campaign_instant(column_sql, table, column): the instant of `column_sql`, which
    carries the Campaign column `table`.`column`.
#}
{% macro campaign_instant(column_sql, table, column) -%}
    {%- if execute and model.resource_type == 'unit_test' -%}
        {#- a unit test's fixtures take the staged column's type, which follows the
            source's, and are written as UTC instants; the graph is not at hand -#}
        case
            when pg_typeof({{ column_sql }}) = 'timestamp without time zone'::regtype
                then {{ column_sql }}::text::timestamp at time zone 'UTC'
            else {{ column_sql }}::text::timestamptz
        end
    {%- elif campaign_column_is_local(table, column) -%}
        {{ adapter.dispatch('local_wall_time_instant', 'campaign_cubes')(column_sql) }}
    {%- else -%}
        {{ column_sql }}
    {%- endif -%}
{%- endmacro %}

{% macro default__local_wall_time_instant(column_sql) -%}
    to_utc_timestamp({{ column_sql }}, {{ quoted_literal(var('campaign_database_timezone', '')) }})
{%- endmacro %}

{% macro postgres__local_wall_time_instant(column_sql) -%}
    case
        when {{ column_sql }} < timestamp '0001-12-31 00:00:00 BC' then '-infinity'::timestamptz
        when {{ column_sql }} >= timestamp '10000-01-02 00:00:00' then 'infinity'::timestamptz
        else {{ column_sql }} at time zone {{ quoted_literal(var('campaign_database_timezone', '')) }}
    end
{%- endmacro %}


{#
    True when the Campaign table's column is `timestamp without time zone` (read
    from the catalog at compile time). Stops with a message naming the var when it
    is and campaign_database_timezone is unset.
#}
{% macro campaign_column_is_local(table, column) %}
    {%- set in_unit_test = model is defined and model.resource_type == 'unit_test' -%}
    {%- if not execute or in_unit_test -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set local = [] -%}
    {%- for node in graph.sources.values()
        if node.source_name == 'campaign' and node.name == table -%}
        {%- set relation = api.Relation.create(
            database=node.database, schema=node.schema, identifier=node.identifier) -%}
        {#- Spark's wall-clock timestamp is timestamp_ntz (orchestrate.py land keeps the type) -#}
        {%- for found in adapter.get_columns_in_relation(relation)
            if found.name | lower == column
            and found.data_type | lower in ('timestamp without time zone', 'timestamp_ntz') -%}
            {%- do local.append(table ~ '.' ~ column) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if local and (var('campaign_database_timezone', '') | string | trim) == '' -%}
        {{ exceptions.raise_compiler_error(
            "campaign-cubes: " ~ local[0] ~ " is timestamp without time zone, so the zone Campaign"
            ~ " stores it in is needed: set var campaign_database_timezone to Campaign's WdbcTimeZone"
            ~ " (an IANA name, e.g. --vars '{campaign_database_timezone: Europe/Paris}')"
        ) }}
    {%- endif -%}
    {{ return(local | length > 0) }}
{% endmacro %}


{#
    The Campaign timestamp columns the cubes turn into dates and durations, by
    table; for the check below, which on-run-start can call so that a missing
    campaign_database_timezone stops the run before anything is written.
#}
{% macro campaign_time_columns() %}
    {{ return({
        'nmspropositionrcp': ['tsevent'],
        'nmseventhisto': ['tscreated', 'tsprocessed'],
        'nmsrtevent': ['tscreated', 'tsprocessed'],
        'nmsbatchevent': ['tscreated', 'tsprocessed'],
    }) }}
{% endmacro %}

{% macro check_campaign_timestamp_zone() %}
    {%- if execute -%}
        {%- for table, columns in campaign_time_columns().items() -%}
            {%- for column in columns -%}
                {%- do campaign_column_is_local(table, column) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}


{#
    Used by the generic test tests/generic/values_in_range.sql: runs its one count
    query, logs one line per column that has such rows, and returns them as the
    test's result rows (a VALUES list), like macros/unlisted_codes.sql.
#}
{% macro out_of_range_rows(counted_sql, model, checks) %}
    {%- set no_rows = "select null::" ~ sql_type('text') ~ " as column_name, 0::bigint as source_rows where false" -%}
    {%- if not execute -%}
        {{ return(no_rows) }}
    {%- endif -%}
    {%- if load_relation(model) is none -%}
        {{ log("campaign-cubes: " ~ model.identifier ~ " not found; its values are not checked", info=True) }}
        {{ return(no_rows) }}
    {%- endif -%}
    {%- set counts = run_query(counted_sql).rows[0] -%}
    {%- set values = [] -%}
    {%- for column, _, member in checks -%}
        {%- set found = counts[loop.index0] -%}
        {%- if found > 0 -%}
            {{ log("campaign-cubes: " ~ model.identifier ~ "." ~ column ~ ": " ~ found
                ~ " rows not finite or out of range, counted with " ~ member, info=True) }}
            {%- do values.append("(" ~ quoted_literal(column) ~ ", " ~ found ~ "::bigint)") -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not values -%}
        {{ return(no_rows) }}
    {%- endif -%}
    {{ return("select * from (values " ~ values | join(", ") ~ ") as out_of_range (column_name, source_rows)") }}
{% endmacro %}
