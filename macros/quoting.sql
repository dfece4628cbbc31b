{# A SQL string literal with quotes doubled: settings are user input. #}
{% macro quoted_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
