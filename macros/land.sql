{#
    `orchestrate.py --target spark land` (campaign_cubes/land.py): the Campaign
    tables copied from PostgreSQL into the Spark database var('campaign_schema'),
    as Parquet, through Spark's JDBC reader in parallel partitions of each table's
    key. land.py describes each table (its PostgreSQL query, key range and
    partitions); this macro runs the copies. The password never appears here: the
    JDBC driver reads it from PGPASSFILE.

    Each table is written beside the landed one (<table>__landing), then put in its
    place: a failed copy leaves the previous landing as it was.
#}
{% macro land_campaign_tables(source, tables) %}
    {%- if target.type != 'spark' -%}
        {{ exceptions.raise_compiler_error(
            "land copies the Campaign tables into Spark; target " ~ target.name ~ " is " ~ target.type
            ~ " (on PostgreSQL the models read the Campaign tables where they are)") }}
    {%- endif -%}
    {%- set database = var('campaign_schema') | string -%}
    {% do run_query('create database if not exists ' ~ database) %}
    {%- for table in tables -%}
        {%- set landed = database ~ '.' ~ table['name'] -%}
        {%- set started = modules.datetime.datetime.now() -%}
        {% do run_query(land_jdbc_view(source, table)) %}
        {% do run_query('drop table if exists ' ~ landed ~ '__landing') %}
        {% do run_query(
            'create table ' ~ landed ~ '__landing using parquet as select '
            ~ land_columns(table) | join(', ') ~ ' from ' ~ table['name'] ~ '__jdbc') %}
        {% do run_query('drop table if exists ' ~ landed) %}
        {% do run_query('alter table ' ~ landed ~ '__landing rename to ' ~ landed) %}
        {% do run_query('drop view if exists ' ~ table['name'] ~ '__jdbc') %}
        {%- set rows = run_query('select count(*) from ' ~ landed).columns[0].values()[0] -%}
        {{ log("land: " ~ landed ~ ": " ~ rows ~ " rows in "
            ~ "%.1f" | format((modules.datetime.datetime.now() - started).total_seconds()) ~ " s", info=True) }}
        {%- if rows != table['rows'] -%}
            {{ exceptions.raise_compiler_error(
                "land: " ~ landed ~ " has " ~ rows ~ " rows, the source had " ~ table['rows']
                ~ " when it was described: the source changed meanwhile; land again") }}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}


{# A Spark string literal: backslashes and quotes escaped. #}
{% macro spark_string(value) -%}
    '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}


{# The JDBC source of one table, a temporary view; partitioned on the key when it has rows. #}
{% macro land_jdbc_view(source, table) %}
    create or replace temporary view {{ table['name'] }}__jdbc
    using jdbc
    options (
        url {{ spark_string(source['url']) }},
        driver 'org.postgresql.Driver',
        user {{ spark_string(source['user']) }},
        dbtable {{ spark_string('(' ~ table['query'] ~ ') as landed') }},
        fetchsize '10000',
        {%- if table['partitions'] > 1 %}
        partitionColumn {{ spark_string(table['key']) }},
        lowerBound '{{ table['lower'] }}',
        upperBound '{{ table['upper'] }}',
        {%- endif %}
        numPartitions '{{ table['partitions'] }}'
    )
{% endmacro %}


{# The landed columns: timestamps back from epoch microseconds, the rest as read. #}
{% macro land_columns(table) %}
    {%- set columns = [] -%}
    {%- for column in table['columns'] -%}
        {%- set name = '`' ~ column | replace('`', '``') ~ '`' -%}
        {%- if column in table['instants'] -%}
            {%- do columns.append('timestamp_micros(' ~ name ~ ') as ' ~ name) -%}
        {%- elif column in table['wall_times'] -%}
            {#- a wall time: the session zone is UTC (profiles.yml.example), so the wall time stays -#}
            {%- do columns.append('cast(timestamp_micros(' ~ name ~ ') as timestamp_ntz) as ' ~ name) -%}
        {%- else -%}
            {%- do columns.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(columns) }}
{% endmacro %}
