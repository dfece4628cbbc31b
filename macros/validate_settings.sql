{#
    The settings (CAMPAIGN_CUBES_SCHEMA and the vars of dbt_project.yml) are user
    input. Two checks stop a bad value with a message that names it:

    - validate_static_settings: what needs no database, at parse time, before dbt
      writes anything (called by generate_schema_name);
    - validate_settings: on-run-start, the same again plus what the database knows
      (the zones, the Campaign schema).

    Values reach SQL only as quoted_literal or quote_identifier; identifiers are
    also restricted to what PostgreSQL accepts unquoted, so quoted and unquoted
    references name the same object.
#}
{% macro validate_settings() %}
    {{ return(adapter.dispatch('validate_settings', 'campaign_cubes')()) }}
{% endmacro %}

{% macro postgres__validate_settings() %}
    {%- if execute -%}
        {%- do validate_static_settings() -%}

        {%- for name in ['reporting_timezone', 'campaign_database_timezone'] -%}
            {%- set zone = var(name, '') -%}
            {%- if zone is not none and zone | string | length > 0 -%}
                {%- set known_zone = run_query(
                    "select count(*) from pg_timezone_names where lower(name) = lower("
                    ~ quoted_literal(zone) ~ ")"
                ).columns[0].values()[0] -%}
                {%- if known_zone == 0 -%}
                    {{ exceptions.raise_compiler_error(
                        "var " ~ name ~ " is " ~ setting_shown(zone) ~ ", which PostgreSQL does not know as"
                        ~ " a time zone name; use an IANA name such as 'UTC' or 'Europe/Paris'"
                        ~ " (select name from pg_timezone_names lists them)"
                    ) }}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}

        {#- the linked schema when the Campaign tables are read through CAMPAIGN_SOURCE_DSN -#}
        {%- set schema = campaign_source_schema() -%}
        {%- set schema_found = run_query(
            "select count(*) from pg_namespace where nspname = " ~ quoted_literal(schema)
        ).columns[0].values()[0] -%}
        {%- if schema_found == 0 -%}
            {{ exceptions.raise_compiler_error(
                "var campaign_schema is " ~ setting_shown(schema) ~ ", but database '" ~ target.dbname
                ~ "' has no such schema; point it at the schema holding the Campaign"
                ~ " tables (public on a Campaign database)"
            ) }}
        {%- endif -%}

        {#- timestamp-without-time-zone columns need campaign_database_timezone (macros/dates.sql) -#}
        {%- do check_campaign_timestamp_zone() -%}
    {%- endif -%}
{% endmacro %}


{# Stops dbt with every problem found, on one line; nothing when the settings are sound. #}
{% macro validate_static_settings() %}
    {%- set problems = static_settings_problems() -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(
            "campaign-cubes settings refused, nothing was written: " ~ problems | join('; ')) }}
    {%- endif -%}
{% endmacro %}


{# The settings' problems that need no database, each naming its setting and value. #}
{% macro static_settings_problems() %}
    {%- set problems = [] -%}

    {#- the published schema and the working schemas derived from it (longest suffix
        reserved: _campaign, 9 bytes); created by the project, so lower case: then
        readers need no quotes and dbt's relation cache, which folds case, agrees -#}
    {%- set schema = target.schema -%}
    {%- set room = 63 - 9 -%}
    {%- if not setting_is_identifier(schema, lower_only=true) -%}
        {%- do problems.append("CAMPAIGN_CUBES_SCHEMA (the target schema) is " ~ setting_shown(schema)
            ~ "; expected a lower-case PostgreSQL identifier: a-z or _ first, then a-z, 0-9, _ or $") -%}
    {%- elif setting_bytes(schema) > room -%}
        {%- do problems.append("CAMPAIGN_CUBES_SCHEMA (the target schema) is " ~ setting_shown(schema) ~ ", "
            ~ setting_bytes(schema) ~ " bytes; at most " ~ room ~ " leave room for the derived schemas"
            ~ " (<schema>_staging, <schema>_audit) within PostgreSQL's 63") -%}
    {%- elif schema.startswith('pg_') or schema == 'information_schema' -%}
        {%- do problems.append("CAMPAIGN_CUBES_SCHEMA (the target schema) is " ~ setting_shown(schema)
            ~ ", a name PostgreSQL reserves for its own schemas") -%}
    {%- endif -%}

    {#- existing objects, always quoted: their case is kept -#}
    {%- set source_schema = var('campaign_schema') -%}
    {%- if not setting_is_identifier(source_schema) or setting_bytes(source_schema) > 63 -%}
        {%- do problems.append("var campaign_schema is " ~ setting_shown(source_schema)
            ~ "; expected the name of the schema holding the Campaign tables: a PostgreSQL identifier"
            ~ " (a letter or _ first, then letters, digits, _ or $) of at most 63 bytes") -%}
    {%- endif -%}

    {%- set role = var('reporting_role') -%}
    {%- if role is not none and role | string | length > 0 -%}
        {%- if not setting_is_identifier(role) or setting_bytes(role) > 63 -%}
            {%- do problems.append("var reporting_role is " ~ setting_shown(role)
                ~ "; expected empty (no grant) or a role name: a letter or _ first, then letters,"
                ~ " digits, _ or $, at most 63 bytes") -%}
        {%- elif role | lower in reserved_role_names() or (role | lower).startswith('pg_') -%}
            {%- do problems.append("var reporting_role is " ~ setting_shown(role)
                ~ ", a name PostgreSQL reserves (pg_*, public, current_user, ...);"
                ~ " name a role of its own, or leave it empty for no grant") -%}
        {%- endif -%}
    {%- endif -%}

    {#- zones: the shape of an IANA name, and one that the tz database knows (the
        server's own list is checked at run start); schedule_timezone (set by the
        docs build, shown in the docs) only has to have the shape -#}
    {%- for name in ['reporting_timezone', 'campaign_database_timezone', 'schedule_timezone'] -%}
        {%- set zone = var(name, '') -%}
        {%- set optional = name != 'reporting_timezone' -%}
        {%- if not (optional and (zone is none or zone | string | length == 0)) -%}
            {%- if not setting_is_zone(zone, known=(name != 'schedule_timezone')) -%}
                {%- do problems.append("var " ~ name ~ " is " ~ setting_shown(zone)
                    ~ ", not a known IANA time zone name such as 'UTC' or 'Europe/Paris'"
                    ~ (" (or empty)" if optional else "")) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set mode = var('message_center_source') -%}
    {%- if mode is not string or mode not in ['eventhisto', 'execution'] -%}
        {%- do problems.append("var message_center_source is " ~ setting_shown(mode)
            ~ "; expected 'eventhisto' (control instance, nmseventhisto) or"
            ~ " 'execution' (execution instance, nmsrtevent + nmsbatchevent)") -%}
    {%- endif -%}

    {%- if publish_min_volume_ratio() is none -%}
        {%- do problems.append("var publish_min_volume_ratio is "
            ~ setting_shown(var('publish_min_volume_ratio'))
            ~ "; expected a number from 0 to 1 written with a dot, e.g. 0.5 (0 turns the volume guard off)") -%}
    {%- endif -%}

    {%- if publish_lock_timeout_ms() is none -%}
        {%- do problems.append("var publish_lock_timeout is " ~ setting_shown(var('publish_lock_timeout'))
            ~ "; expected a duration with its unit, more than 0 and at most 1 h,"
            ~ " e.g. 500ms, 30s, 2min (ms, s, min or h)") -%}
    {%- endif -%}

    {%- set stale_source_problem = stale_source_after_problem() -%}
    {%- if stale_source_problem -%}{%- do problems.append(stale_source_problem) -%}{%- endif -%}

    {{ return(problems) }}
{% endmacro %}


{#
    var publish_min_volume_ratio as a float in [0, 1], or none when it is anything
    else (Jinja's `float` filter would read 'abc' or '0,5' as 0: the guard off).
#}
{% macro publish_min_volume_ratio() %}
    {%- set value = var('publish_min_volume_ratio') -%}
    {%- if value is boolean or value is none -%}
        {{ return(none) }}
    {%- elif value is string -%}
        {%- if not modules.re.fullmatch('[0-9]+(\\.[0-9]*)?|\\.[0-9]+', value.strip()) -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set value = value.strip() | float -%}
    {%- elif value is not number -%}
        {{ return(none) }}
    {%- endif -%}
    {#- NaN fails both comparisons -#}
    {%- if value >= 0 and value <= 1 -%}
        {{ return(value | float) }}
    {%- endif -%}
    {{ return(none) }}
{% endmacro %}


{#
    var publish_lock_timeout in whole milliseconds, or none when it is not a duration
    with a unit in (0, 1 h]: PostgreSQL reads a bare number as milliseconds and 0
    as "wait forever", so both are refused.
#}
{% macro publish_lock_timeout_ms() %}
    {%- set value = var('publish_lock_timeout') -%}
    {%- if value is not string -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set parts = modules.re.fullmatch('([0-9]+(?:\\.[0-9]+)?) *(ms|s|min|h)', value.strip()) -%}
    {%- if not parts -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set unit_ms = {'ms': 1, 's': 1000, 'min': 60000, 'h': 3600000}[parts.group(2)] -%}
    {%- set milliseconds = (parts.group(1) | float * unit_ms) | round | int -%}
    {%- if milliseconds < 1 or milliseconds > 3600000 -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(milliseconds) }}
{% endmacro %}


{# A name PostgreSQL accepts unquoted (ASCII), lower case only if asked. #}
{% macro setting_is_identifier(value, lower_only=false) %}
    {%- set pattern = '[a-z_][a-z0-9_$]*' if lower_only else '[A-Za-z_][A-Za-z0-9_$]*' -%}
    {{ return(value is string and modules.re.fullmatch(pattern, value) is not none) }}
{% endmacro %}


{#
    An IANA zone name: its shape first (nothing else reaches a lookup), then, when
    `known`, the tz database's list (pytz's copy, case folded as PostgreSQL does).
#}
{% macro setting_is_zone(value, known=true) %}
    {%- if value is not string or setting_bytes(value) > 64
        or not modules.re.fullmatch('[A-Za-z][A-Za-z0-9_+\\-]*(/[A-Za-z0-9_+\\-]+)*', value) -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(not known or value | lower in modules.pytz.all_timezones | map('lower') | list) }}
{% endmacro %}


{# Role names PostgreSQL reserves or reads as keywords in GRANT (pg_* is checked apart). #}
{% macro reserved_role_names() %}
    {{ return(['public', 'current_user', 'current_role', 'session_user', 'system_user', 'user',
        'none', 'all']) }}
{% endmacro %}


{% macro setting_bytes(value) %}
    {{ return(value | string | length if value is not string else value.encode('utf-8') | length) }}
{% endmacro %}


{# A value for a message: quoted, on one line, cut short; the type when it is not text. #}
{% macro setting_shown(value) %}
    {%- if value is none -%}
        {{ return('empty') }}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if text | length > 80 -%}{%- set text = text[:77] ~ '...' -%}{%- endif -%}
    {%- set text = "'" ~ text | replace('\r', '\\r') | replace('\n', '\\n') ~ "'" -%}
    {%- if value is boolean -%}
        {%- set text = text ~ ' (a boolean)' -%}
    {%- elif value is not string and value is not number -%}
        {%- set text = text ~ ' (not a single value)' -%}
    {%- endif -%}
    {{ return(text) }}
{% endmacro %}


{# An identifier for SQL, embedded double quotes doubled (adapter.quote does not). #}
{% macro quote_identifier(name) -%}
    "{{ name | string | replace('"', '""') }}"
{%- endmacro %}


{#
    Spark: the settings that need no database, then what the engine says. ANSI
    mode must be on (dbt-spark turns it off: campaign_cubes/spark_dbt.py), or a
    division by zero, an overflow or a bad cast would give NULL, silently, in a
    published aggregate; the session zone must be UTC, in which the models turn
    instants into dates (from_utc_timestamp). The Campaign tables' database must
    exist: `orchestrate.py --target spark land` creates it.
#}
{% macro spark__validate_settings() %}
    {%- if execute -%}
        {%- do validate_static_settings() -%}
        {%- set ansi = run_query("set spark.sql.ansi.enabled").rows[0][1] | string | lower -%}
        {%- set zone = run_query("select current_timezone()").rows[0][0] -%}
        {%- if ansi != 'true' -%}
            {{ exceptions.raise_compiler_error(
                "Spark runs with spark.sql.ansi.enabled=" ~ ansi ~ " (dbt-spark forces it off): a division"
                ~ " by zero or an overflow would become NULL; nothing was built. Run dbt through orchestrate.py, or"
                ~ " python -m campaign_cubes.spark_dbt, with spark.sql.ansi.enabled: true in the profile") }}
        {%- endif -%}
        {%- if zone not in ['UTC', 'Etc/UTC'] -%}
            {{ exceptions.raise_compiler_error(
                "Spark's session time zone is " ~ zone ~ "; set spark.sql.session.timeZone: UTC in the"
                ~ " profile (the models convert instants to dates in reporting_timezone from UTC)") }}
        {%- endif -%}
        {%- set schema = var('campaign_schema') | string -%}
        {%- if not adapter.check_schema_exists(target.database, schema) -%}
            {{ exceptions.raise_compiler_error(
                "var campaign_schema is " ~ setting_shown(schema) ~ ", but Spark has no such database; land the"
                ~ " Campaign tables first: orchestrate.py --target spark land --vars '{campaign_schema: "
                ~ schema ~ "}'") }}
        {%- endif -%}
        {%- do check_campaign_timestamp_zone() -%}
    {%- endif -%}
{% endmacro %}
