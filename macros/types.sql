{#
    Data types and the few expressions whose spelling differs between engines.
    The models name PostgreSQL's types (the contract's, docs/contract.md);
    sql_type gives the engine's own name for each. PostgreSQL's SQL stays as it
    was; Spark's is in the spark__ macros (docs/spark.md).
#}

{% macro sql_type(postgres_type) -%}
    {{ return(adapter.dispatch('sql_type', 'campaign_cubes')(postgres_type)) }}
{%- endmacro %}

{% macro postgres__sql_type(postgres_type) -%}
    {{ return(postgres_type) }}
{%- endmacro %}

{#
    Elsewhere (Spark): no text, varchar without a length, timestamptz or double precision
    (`x::double precision` would even parse as `x::double` named `precision`).
    Its timestamp is an instant, as timestamptz is.
#}
{% macro default__sql_type(postgres_type) -%}
    {{ return({
        'text': 'string', 'varchar': 'string', 'timestamptz': 'timestamp', 'double precision': 'double',
        'integer': 'int', 'numeric': 'decimal(38, 0)',
    }.get(postgres_type, postgres_type)) }}
{%- endmacro %}


{# The characters a blank text consists of (spaces, tabs, line breaks), as a string literal. #}
{% macro blank_characters() -%}
    {{ return(adapter.dispatch('blank_characters', 'campaign_cubes')()) }}
{%- endmacro %}

{% macro default__blank_characters() -%}
    {#- Spark reads backslash escapes in every string literal -#}
    ' \t\r\n'
{%- endmacro %}

{% macro postgres__blank_characters() -%}
    e' \t\r\n'
{%- endmacro %}


{#
    numerator / denominator as an exact number without trailing zeros, NULL when
    the denominator is 0: PostgreSQL's numeric division (at least 16 significant
    digits, rounded half up), trimmed.
#}
{% macro exact_ratio(numerator, denominator) -%}
    {{ return(adapter.dispatch('exact_ratio', 'campaign_cubes')(numerator, denominator)) }}
{%- endmacro %}

{% macro postgres__exact_ratio(numerator, denominator) -%}
    -- trim_scale: the exact ratio without numeric division's 20 trailing digits
    trim_scale(
        {{ numerator }}::numeric
        / nullif({{ denominator }}, 0)
    )
{%- endmacro %}

{#
    Elsewhere (Spark), decimals are fixed-scale: the quotient is taken with 25 decimals, then
    rounded (half up, as PostgreSQL) to the scale PostgreSQL's division picks
    (select_div_scale: 16 - 4 x the quotient's weight in base-10000 digits, from
    both operands' weights and first digits). Spark's round() wants a constant
    scale, hence one branch per weight. Counts below 10^13 are exact; a ratio below
    10^-8 keeps 25 decimals where PostgreSQL gives 28. The export writes it without
    trailing zeros.
#}
{% macro default__exact_ratio(numerator, denominator) -%}
    {%- set numerator, denominator = '(' ~ numerator ~ ')', '(' ~ denominator ~ ')' -%}
    {%- set quotient = 'cast(' ~ numerator ~ ' as decimal(38, 25)) / cast(' ~ denominator ~ ' as decimal(13, 0))' -%}
    case
        when {{ denominator }} = 0 then null
        when {{ numerator }} = 0 then cast(0 as decimal(38, 25))
        else case {{ base10000_weight(numerator) }} - {{ base10000_weight(denominator) }} - case
                when {{ numerator }} div cast(power(10000, {{ base10000_weight(numerator) }}) as bigint)
                    <= {{ denominator }} div cast(power(10000, {{ base10000_weight(denominator) }}) as bigint)
                    then 1
                else 0
            end
            {%- for weight in [1, 0, -1, -2] %}
            when {{ weight }} then round({{ quotient }}, {{ 16 - 4 * weight }})
            {%- endfor %}
            else {{ quotient }}
        end
    end
{%- endmacro %}

{# The weight of a positive integer in base 10000 (PostgreSQL's numeric digits). #}
{% macro base10000_weight(value) -%}
    ((length(cast({{ value }} as string)) - 1) div 4)
{%- endmacro %}


{# A date is finite: PostgreSQL has infinite dates, Spark does not. #}
{% macro finite_date(date_column) -%}
    {{ return(adapter.dispatch('finite_date', 'campaign_cubes')(date_column)) }}
{%- endmacro %}

{% macro default__finite_date(date_column) -%}
    {{ date_column }} is not null
{%- endmacro %}

{% macro postgres__finite_date(date_column) -%}
    isfinite({{ date_column }})
{%- endmacro %}


{#
    The average of exact numbers (seconds with 6 decimals), whose double (the
    models cast it) is PostgreSQL's: numeric avg() there (16 significant digits at
    least). Elsewhere (Spark) a decimal quotient with 20 decimals, where avg()
    keeps fewer, given as its text: Spark's cast of so wide a decimal to double is
    not always the nearest double, its cast of the text is.
#}
{% macro exact_average(expression) -%}
    {{ return(adapter.dispatch('exact_average', 'campaign_cubes')(expression)) }}
{%- endmacro %}

{% macro default__exact_average(expression) -%}
    cast(
        cast(sum({{ expression }}) as decimal(24, 6)) / nullif(cast(count({{ expression }}) as decimal(19, 0)), 0)
        as string
    )
{%- endmacro %}

{% macro postgres__exact_average(expression) -%}
    avg({{ expression }})
{%- endmacro %}
