{#
    Campaign values the cubes cannot use as they are: a timestamp that is not
    finite or whose day in the reporting zone falls outside 0001-01-01 ..
    9999-12-31, a weight that is NaN, infinite or absurd (macros/dates.sql). Such
    rows are still counted, with no date, no processing time or no weight; this
    test (severity warn) says how many per column in the run's log, e.g.
    `nmseventhisto.tsprocessed: 3 rows not finite or out of range, counted with
    no processing time`, in one pass over the Campaign table.

    dates: columns that give the row its date; durations: columns that end a
    processing time; weights: columns that are summed. read_when: the
    message_center_source that reads the table (none: always read); a table the
    configured one does not read, or that is absent, is not checked.
#}
{% test values_in_range(model, dates=[], durations=[], weights=[], read_when=none) %}

    {%- if read_when is not none and read_when != var('message_center_source') -%}
        {{ return("select null::" ~ sql_type('text') ~ " as column_name, 0::bigint as source_rows where false") }}
    {%- endif -%}

    {%- set checks = [] -%}
    {%- for column in dates -%}
        {%- do checks.append((column, has_local_date(campaign_instant(column, model.identifier, column)), 'no date')) -%}
    {%- endfor -%}
    {%- for column in durations -%}
        {%- do checks.append((column, supported_instant(campaign_instant(column, model.identifier, column)),
            'no processing time')) -%}
    {%- endfor -%}
    {%- for column in weights -%}
        {%- do checks.append((column, '(' ~ finite_weight(column) ~ ') is not null', 'no weight')) -%}
    {%- endfor -%}

    {%- set counted_sql -%}
        select
            {%- for column, usable, _ in checks %}
            count(*) filter (where {{ column }} is not null and not ({{ usable }})) as out_of_range_{{ loop.index }}
            {{- "," if not loop.last }}
            {%- endfor %}
        from {{ model }}
    {%- endset -%}

    {{ out_of_range_rows(counted_sql, model, checks) }}

{% endtest %}
