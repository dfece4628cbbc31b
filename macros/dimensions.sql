{#
    Campaign's date dimension levels, carried as columns so that reports roll up
    without a calendar join: ISO week (its Monday), month and semester (their
    first day) and year. A NULL date gives NULL levels; so does an infinite one,
    which the models never emit (macros/dates.sql) but which must not fail here.
    Every day of 0001-01-01 .. 9999-12-31 has its levels in that range too
    (0001-01-01 is a Monday).
#}
{% macro date_levels(date_column, prefix) -%}
    case when {{ finite_date(date_column) }} then date_trunc('week', {{ date_column }})::date end
        as {{ prefix }}_week,
    case when {{ finite_date(date_column) }} then date_trunc('month', {{ date_column }})::date end
        as {{ prefix }}_month,
    case when {{ finite_date(date_column) }} then make_date(
        extract(year from {{ date_column }})::integer,
        case when extract(month from {{ date_column }}) <= 6 then 1 else 7 end,
        1
    ) end as {{ prefix }}_semester,
    case when {{ finite_date(date_column) }} then extract(year from {{ date_column }})::integer end
        as {{ prefix }}_year
{%- endmacro %}


{#
    The label of an enumeration code: the seed's label, `unknown` for -1 (no code in
    the source) and `unknown (<code>)` for a code the seed does not list, so that
    no row is dropped and none hides behind a NULL.
#}
{% macro code_label(seed_code, seed_label, code) -%}
    case
        when {{ code }} = -1 then 'unknown'
        when {{ seed_code }} is null then 'unknown (' || {{ code }} || ')'
        else {{ seed_label }}
    end
{%- endmacro %}


{#
    The label of a Campaign link: `<none_label>` for 0 (no link), `unknown (<id>)`
    when the linked row does not exist, the looked-up text otherwise.
#}
{% macro link_label(looked_up_id, looked_up_text, link_id, none_label) -%}
    case
        when {{ link_id }} = 0 then '{{ none_label }}'
        when {{ looked_up_id }} is null then 'unknown (' || {{ link_id }} || ')'
        else {{ looked_up_text }}
    end
{%- endmacro %}
