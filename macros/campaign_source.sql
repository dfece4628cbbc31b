{#
    Where the Campaign tables are read (docs/topologies.md).

    CAMPAIGN_SOURCE_DSN unset: in the build's own database, schema var
    campaign_schema (the in-database topology).

    CAMPAIGN_SOURCE_DSN set (a libpq connection string, keyword=value or
    postgresql:// URI): the build's database is a separate analytics database,
    and the Campaign tables of var campaign_schema in the DSN's database (a
    primary or a hot standby, a read-only login is enough) are linked into
    <target schema>_campaign with postgres_fdw, before anything else runs
    (on-run-start). The password comes from CAMPAIGN_SOURCE_PASSWORD, else from
    the pgpass file of the analytics server's operating-system user; it is sent
    as a query parameter, so it is never part of the SQL text dbt logs.
#}

{# The Campaign tables the cubes read (those the source has are linked). #}
{% macro campaign_source_tables() %}
    {{ return([
        'nmspropositionrcp', 'nmsoffer', 'nmsofferspace', 'nmsdelivery',
        'nmseventhisto', 'nmsrtevent', 'nmsbatchevent',
    ]) }}
{% endmacro %}


{#
    The Campaign database to link, or empty. Only PostgreSQL links it: on Spark,
    `orchestrate.py land` reads CAMPAIGN_SOURCE_DSN and the models read the copies.
#}
{% macro campaign_source_dsn() %}
    {{ return(env_var('CAMPAIGN_SOURCE_DSN', '') | trim if target.type == 'postgres' else '') }}
{% endmacro %}


{# The schema the staging models read (the sources' schema follows the same rule). #}
{% macro campaign_source_schema() %}
    {%- if campaign_source_dsn() -%}
        {{ return(target.schema ~ '_campaign') }}
    {%- endif -%}
    {{ return(var('campaign_schema') | string) }}
{% endmacro %}


{#
    A relation exists, whatever its kind: dbt's relation listing (load_relation)
    does not show foreign tables.
#}
{% macro campaign_relation_exists(relation) %}
    {{ return(adapter.dispatch('campaign_relation_exists', 'campaign_cubes')(relation)) }}
{% endmacro %}

{% macro default__campaign_relation_exists(relation) %}
    {{ return(load_relation(relation) is not none) }}
{% endmacro %}

{% macro postgres__campaign_relation_exists(relation) %}
    {%- set name = adapter.quote(relation.schema) ~ '.' ~ adapter.quote(relation.identifier) -%}
    {{ return(run_query("select to_regclass(" ~ quoted_literal(name) ~ ") is not null").columns[0].values()[0]) }}
{% endmacro %}


{#
    A libpq connection string as a dict of keywords, as libpq reads it: either
    `keyword=value ...` (values optionally single-quoted, backslash escapes) or a
    `postgresql://user@host:port/dbname?keyword=value` URI (percent-encoded).
#}
{% macro parse_campaign_dsn(dsn) %}
    {%- set re = modules.re -%}
    {%- if re.match('postgres(ql)?://', dsn) -%}
        {{ return(parse_campaign_dsn_uri(dsn)) }}
    {%- endif -%}
    {%- set pair = "\\s*([A-Za-z_]+)\\s*=\\s*('(?:[^'\\\\]|\\\\.)*'|(?:[^\\s'\\\\]|\\\\.)+)" -%}
    {%- if not re.fullmatch('(?:' ~ pair ~ ')*\\s*', dsn) -%}
        {{ exceptions.raise_compiler_error(
            "CAMPAIGN_SOURCE_DSN is not a libpq connection string (keyword=value pairs such as"
            ~ " \"host=campaign-replica port=5432 dbname=campaign user=cubes_reader\", or a postgresql:// URI)") }}
    {%- endif -%}
    {%- set settings = {} -%}
    {%- for keyword, raw in re.findall(pair, dsn) -%}
        {%- set value = raw[1:-1] if raw.startswith("'") else raw -%}
        {%- do settings.update({keyword: re.sub('\\\\(.)', '\\1', value)}) -%}
    {%- endfor -%}
    {{ return(settings) }}
{% endmacro %}


{% macro parse_campaign_dsn_uri(dsn) %}
    {%- set uri = modules.re.fullmatch(
        "postgres(?:ql)?://(?:([^:@/?]*)(?::([^@/?]*))?@)?(\\[[^\\]]*\\]|[^:/?,]*)(?::([0-9]*))?(?:/([^?]*))?(?:\\?(.*))?",
        dsn) -%}
    {%- if uri is none -%}
        {{ exceptions.raise_compiler_error(
            "CAMPAIGN_SOURCE_DSN is a URI this project does not read (one host only);"
            ~ " write it as keyword=value pairs: host=... port=... dbname=... user=...") }}
    {%- endif -%}
    {%- set settings = {} -%}
    {%- for keyword, index in [('user', 1), ('password', 2), ('host', 3), ('port', 4), ('dbname', 5)] -%}
        {%- set value = campaign_dsn_percent_decoded(uri.group(index) or '') -%}
        {%- if value -%}
            {%- do settings.update({keyword: value[1:-1] if keyword == 'host' and value.startswith('[') else value}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for parameter in (uri.group(6) or '').split('&') if parameter -%}
        {%- set keyword, _, value = parameter.partition('=') -%}
        {%- do settings.update({campaign_dsn_percent_decoded(keyword): campaign_dsn_percent_decoded(value)}) -%}
    {%- endfor -%}
    {{ return(settings) }}
{% endmacro %}


{# %XX escapes of a URI, ASCII only (a non-ASCII value is better written keyword=value). #}
{% macro campaign_dsn_percent_decoded(text) %}
    {%- set pieces = [] -%}
    {%- for piece in modules.re.split('(%[0-9A-Fa-f]{2})', text) -%}
        {%- if loop.index0 is odd -%}
            {%- set code = piece[1:] | int(base=16) -%}
            {%- if code > 127 -%}
                {{ exceptions.raise_compiler_error(
                    "CAMPAIGN_SOURCE_DSN: a percent-encoded non-ASCII character in the URI;"
                    ~ " write the connection string as keyword=value pairs") }}
            {%- endif -%}
            {%- do pieces.append('%c' | format(code)) -%}
        {%- else -%}
            {%- do pieces.append(piece) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(pieces | join('')) }}
{% endmacro %}


{#
    on-run-start, before validate_settings: the link to the Campaign database,
    created or brought up to date (server options, user mapping, foreign tables).
    A no-op in the in-database topology.
#}
{% macro link_campaign_source() %}
    {{ return(adapter.dispatch('link_campaign_source', 'campaign_cubes')()) }}
{% endmacro %}

{#- Spark reads the landed copies (orchestrate.py land, macros/land.sql): nothing to link. -#}
{% macro spark__link_campaign_source() %}
{% endmacro %}

{% macro postgres__link_campaign_source() %}
    {%- if execute and campaign_source_dsn() -%}
        {%- set settings = parse_campaign_dsn(campaign_source_dsn()) -%}
        {%- if 'password' in settings -%}
            {{ exceptions.raise_compiler_error(
                "CAMPAIGN_SOURCE_DSN holds a password; remove it and set CAMPAIGN_SOURCE_PASSWORD"
                ~ " (or use the pgpass file of the analytics server's postgres user)") }}
        {%- endif -%}
        {%- set server_options = {'fetch_size': '10000'} -%}
        {%- for keyword, value in settings.items() if keyword != 'user' -%}
            {%- do server_options.update({keyword: value}) -%}
        {%- endfor -%}
        {%- set mapping_options = {'user': settings.get('user', target.user)} -%}
        {%- set password = env_var('CAMPAIGN_SOURCE_PASSWORD', '') -%}
        {%- if password -%}{%- do mapping_options.update({'password': password}) -%}{%- endif -%}
        {%- set linked = campaign_source_schema() -%}
        {%- set server = adapter.quote(linked) -%}

        {% call statement('link_campaign_source') -%}
            select pg_advisory_xact_lock(hashtextextended('campaign_cubes.link_campaign_source', 0));
            create extension if not exists postgres_fdw;
            create server if not exists {{ server }} foreign data wrapper postgres_fdw;
            create user mapping if not exists for current_user server {{ server }};
            create schema if not exists {{ adapter.quote(linked) }}
        {%- endcall %}
        {% do campaign_source_set_options(
            'server ' ~ server,
            "select srvoptions as options from pg_foreign_server where srvname = " ~ quoted_literal(linked),
            server_options) %}
        {% do campaign_source_set_options(
            'user mapping for current_user server ' ~ server,
            "select umoptions as options from pg_user_mappings where usename = current_user and srvname = "
            ~ quoted_literal(linked),
            mapping_options, keep=['password_required']) %}
        {% call statement('import_campaign_source') -%}
            {{ campaign_source_import(linked, var('campaign_schema') | string) }}
        {%- endcall %}
        {% do adapter.commit() %}
        {{ log("campaign-cubes: Campaign tables of " ~ server_options.get('host', 'localhost') ~ ":"
            ~ server_options.get('port', '5432') ~ "/" ~ server_options.get('dbname', '') ~ " schema "
            ~ var('campaign_schema') ~ " linked into " ~ linked, info=False) }}
    {%- endif -%}
{% endmacro %}


{#
    Options of a foreign server or user mapping set to exactly `wanted`, only when
    they differ (altering them makes running builds reconnect), but for the `keep`
    options, which stay as they are. Values travel as
    query parameters: the password never appears in the logged SQL.
#}
{% macro campaign_source_set_options(object, options_query, wanted, keep=[]) %}
    {%- set current = {} -%}
    {%- for row in run_query(
        "select option_name, option_value from (" ~ options_query ~ ") as owner,"
        ~ " pg_options_to_table(owner.options)") -%}
        {%- do current.update({row[0]: row[1]}) -%}
        {#- set by a superuser (password_required 'false': the pgpass file is used); never undone -#}
        {%- if row[0] in keep -%}{%- do wanted.update({row[0]: row[1]}) -%}{%- endif -%}
    {%- endfor -%}
    {%- if current != wanted -%}
        {%- set actions = [] -%}
        {%- set values = [] -%}
        {%- for name in current if name not in wanted -%}
            {%- do actions.append('drop ' ~ adapter.quote(name)) -%}
        {%- endfor -%}
        {%- for name, value in wanted.items() -%}
            {%- do actions.append(('set ' if name in current else 'add ') ~ adapter.quote(name) ~ ' %s') -%}
            {%- do values.append(value) -%}
        {%- endfor -%}
        {% do adapter.add_query('alter ' ~ object ~ ' options (' ~ actions | join(', ') ~ ')',
            auto_begin=True, bindings=values) %}
    {%- endif -%}
{% endmacro %}


{#
    Imports the Campaign tables into a scratch schema, then brings the linked
    foreign tables up to date from it: a new table is moved in; a known one gets
    the columns and types the source has now (ALTER, not drop + import, so the
    staging views on it stay) and its remote name. Nothing is altered when
    nothing changed, so a build reading the tables is not waited for.
#}
{% macro campaign_source_import(linked, remote_schema) %}
    {%- set scratch = linked ~ '__import' -%}
    drop schema if exists {{ adapter.quote(scratch) }} cascade;
    create schema {{ adapter.quote(scratch) }};
    import foreign schema {{ adapter.quote(remote_schema) }}
    limit to ({{ campaign_source_tables() | join(', ') }})
    from server {{ adapter.quote(linked) }} into {{ adapter.quote(scratch) }}
    -- constraints and collations are the source's business, not the reader's
    options (import_not_null 'false', import_collate 'false', import_default 'false');
    do $campaign_source$
    declare
        linked constant text := {{ quoted_literal(linked) }};
        scratch constant text := {{ quoted_literal(scratch) }};
        imported record;
        known regclass;
        col record;
    begin
        -- a table the source no longer has: unlinked, unless views still read it
        for imported in
            select c.relname from pg_class as c
            where c.relnamespace = quote_ident(linked)::regnamespace and c.relkind = 'f'
                and not exists (
                    select from pg_class as s
                    where s.relnamespace = quote_ident(scratch)::regnamespace and s.relname = c.relname
                )
        loop
            begin
                execute format('drop foreign table %I.%I', linked, imported.relname);
            exception when dependent_objects_still_exist then
                raise notice 'campaign-cubes: %.% is gone from the source but still read by views', linked, imported.relname;
            end;
        end loop;
        for imported in
            select c.oid, c.relname from pg_class as c
            where c.relnamespace = quote_ident(scratch)::regnamespace
        loop
            known := to_regclass(format('%I.%I', linked, imported.relname));
            if known is null then
                execute format('alter foreign table %I.%I set schema %I', scratch, imported.relname, linked);
                continue;
            end if;
            if (select ftoptions from pg_foreign_table where ftrelid = known)
                is distinct from (select ftoptions from pg_foreign_table where ftrelid = imported.oid) then
                execute format('alter foreign table %s options (set schema_name %L, set table_name %L)',
                    known, {{ quoted_literal(remote_schema) }}, imported.relname);
            end if;
            for col in
                select attname from pg_attribute where attrelid = known and attnum > 0 and not attisdropped
                except
                select attname from pg_attribute where attrelid = imported.oid and attnum > 0 and not attisdropped
            loop
                execute format('alter foreign table %s drop column %I', known, col.attname);
            end loop;
            for col in
                select attname, format_type(atttypid, atttypmod) as data_type
                from pg_attribute where attrelid = imported.oid and attnum > 0 and not attisdropped
                except
                select attname, format_type(atttypid, atttypmod)
                from pg_attribute where attrelid = known and attnum > 0 and not attisdropped
            loop
                if exists (select from pg_attribute where attrelid = known and attname = col.attname and not attisdropped) then
                    execute format('alter foreign table %s alter column %I type %s', known, col.attname, col.data_type);
                else
                    execute format('alter foreign table %s add column %I %s', known, col.attname, col.data_type);
                end if;
            end loop;
        end loop;
        execute format('drop schema %I cascade', scratch);
    end
    $campaign_source$
{%- endmacro %}
