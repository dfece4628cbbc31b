{#
    The freshness gate of a publication (var stale_source_after): a cube whose
    Campaign fact tables stopped changing is refused, so that a replica that
    stopped replicating never publishes yesterday's numbers as today's.

    Before its candidate is built, a publication reads, in its own snapshot, the
    newest `tslastmodified` of the cube's fact tables (the sources'
    loaded_at_field) that is not after the run's start (dbt's run_started_at): a
    row dated in the future proves nothing, and one such corrupt row must not
    keep a dead source looking fresh. When that newest instant is older than the
    threshold, or there is none, nothing is built or published; the refusal is
    recorded in <schema>_audit.publication_log and the node fails with a message
    that orchestrate.py turns into its own exit code (8).

    var stale_source_after: `off` (no check), `source` (the fact tables'
    freshness error_after, in _campaign__sources.yml), or a duration such as
    `36 hours` (minutes, hours or days); or a mapping from aggregate name to one
    of these, an aggregate not named being `off`. Off by default for a plain dbt
    build; orchestrate.py's jobs set it (orchestrate.toml, `stale_after`).
#}


{#
    The gate itself, called by published_table on either engine before it builds
    anything: when the cube's facts are too old, records the refusal (committed, so
    that it outlives the failed node) and stops the node with the message
    orchestrate.py recognises. `published` names what readers keep seeing.
#}
{% macro refuse_stale_source(audit, audit_schema, published) %}
    {%- set threshold = stale_source_threshold(model.name, audit['facts']) -%}
    {%- set stale = stale_source_refusal(audit['facts'], threshold) if threshold is not none else none -%}
    {%- if stale -%}
        {% do published_table_record(audit_schema, {'model': model.name}, 'stale_source', stale) %}
        {% do adapter.commit() %}
        {{ exceptions.raise_compiler_error(
            "campaign-cubes stale source, nothing was published: " ~ this.identifier ~ ": " ~ stale
            ~ ". The published " ~ published ~ " is unchanged (var stale_source_after,"
            ~ " or stale_after in orchestrate.toml, sets the threshold or switches the check off)."
        ) }}
    {%- endif -%}
{% endmacro %}


{#
    The threshold in seconds of `model_name`, with the words that say where it
    comes from; none when the check is off. Assumes stale_source_after_problem found
    nothing (static_settings_problems).
#}
{% macro stale_source_threshold(model_name, facts) %}
    {%- set setting = var('stale_source_after', 'off') -%}
    {%- if setting is mapping -%}
        {%- set setting = setting.get(model_name, 'off') -%}
    {%- endif -%}
    {%- if stale_source_setting_off(setting) -%}
        {{ return(none) }}
    {%- elif setting | string | trim | lower == 'source' -%}
        {%- set limits = [] -%}
        {%- for fact in campaign_fact_tables(facts) -%}
            {%- set seconds = source_error_after_seconds(fact.table) -%}
            {%- if seconds is not none -%}{%- do limits.append(seconds) -%}{%- endif -%}
        {%- endfor -%}
        {%- if not limits -%}
            {{ return(none) }}
        {%- endif -%}
        {{ return({'seconds': limits | min, 'said': "the sources' freshness error_after"}) }}
    {%- endif -%}
    {{ return({'seconds': stale_source_duration_seconds(setting), 'said': 'stale_source_after'}) }}
{% endmacro %}


{% macro stale_source_setting_off(setting) %}
    {{ return(setting is none or setting is false or (setting | string | trim | lower) in ['off', '']) }}
{% endmacro %}


{# `36 hours`, `90 min`, `3 days` in seconds; none for anything else (zero included). #}
{% macro stale_source_duration_seconds(setting) %}
    {%- if setting is not string -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set parts = modules.re.fullmatch(
        '([0-9]+(?:\\.[0-9]+)?) *(minutes?|min|hours?|h|days?|d)', setting.strip().lower()) -%}
    {%- if not parts -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set unit = {'m': 60, 'h': 3600, 'd': 86400}[parts.group(2)[0]] -%}
    {%- set seconds = (parts.group(1) | float * unit) | round | int -%}
    {{ return(seconds if seconds > 0 else none) }}
{% endmacro %}


{# What is wrong with var stale_source_after, or none (static_settings_problems). #}
{% macro stale_source_after_problem() %}
    {%- set setting = var('stale_source_after', 'off') -%}
    {#- named here, not read from the graph: dbt calls this while parsing, before the graph exists -#}
    {%- set published = ['agg_messageCenter_full', 'agg_nmspropositionrcp_full'] -%}
    {%- set entries = setting.items() if setting is mapping else [(none, setting)] -%}
    {%- for name, value in entries -%}
        {%- if name is not none and name not in published -%}
            {{ return("var stale_source_after names " ~ setting_shown(name) ~ ", which is no aggregate ("
                ~ published | join(', ') ~ ")") }}
        {%- endif -%}
        {%- if not (stale_source_setting_off(value) or (value | string | trim | lower) == 'source'
            or stale_source_duration_seconds(value) is not none) -%}
            {{ return("var stale_source_after" ~ ("" if name is none else " of " ~ name) ~ " is "
                ~ setting_shown(value) ~ "; expected off, source (the sources' freshness error_after)"
                ~ " or a duration such as '36 hours' (minutes, hours or days, more than 0)") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}


{# A Campaign source's freshness error_after in seconds, or none when it has none. #}
{% macro source_error_after_seconds(table) %}
    {%- for node in graph.sources.values() if node.source_name == 'campaign' and node.name == table -%}
        {%- set freshness = node.freshness or node.config.get('freshness') or {} -%}
        {%- set error_after = freshness.get('error_after') or {} -%}
        {%- if error_after.get('count') and error_after.get('period') -%}
            {%- set unit = {'minute': 60, 'hour': 3600, 'day': 86400}[error_after['period']] -%}
            {{ return(error_after['count'] * unit) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}


{#
    Why the cube's facts are too old to publish, or none when they are fresh
    enough: one query, in the publication's snapshot, over every fact table. The
    ages come from the engine (seconds_between); their text is written here, so
    that the query is the same on every engine.
#}
{% macro stale_source_refusal(facts, threshold) %}
    {%- set run_start_text = run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    {%- set run_start = instant_literal(run_start_text) -%}
    {%- set query -%}
        {% for fact in campaign_fact_tables(facts) -%}
        {% if not loop.first %}union all{% endif %}
        select
            {{ quoted_literal(fact.table) }} as fact_table,
            {{ seconds_between('max(modified_at)', run_start) }} as age_seconds
        from (
            select
                {{ campaign_instant('tslastmodified', fact.table, 'tslastmodified') }} as modified_at
            from {{ source('campaign', fact.table) }}
        ) as modified
        where modified_at <= {{ run_start }}
        {% endfor %}
    {%- endset -%}
    {%- set newest = [] -%}
    {%- set ages = [] -%}
    {%- for row in run_query(query).rows | sort(attribute='fact_table') -%}
        {%- if row['age_seconds'] is none -%}
            {%- do newest.append(row['fact_table'] ~ ': none') -%}
        {%- else -%}
            {%- set age = row['age_seconds'] | float -%}
            {%- do ages.append(age) -%}
            {%- do newest.append(row['fact_table'] ~ ': '
                ~ (run_started_at - modules.datetime.timedelta(seconds=age)).strftime('%Y-%m-%d %H:%M:%S') ~ ' UTC') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set age = ages | min if ages else none -%}
    {%- if age is not none and age <= threshold['seconds'] -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("the newest tslastmodified up to the run's start (" ~ run_start_text
        ~ " UTC) is " ~ ("missing" if age is none else stale_source_age_text(age) ~ " old") ~ " ("
        ~ newest | join(', ') ~ "), beyond " ~ stale_source_age_text(threshold['seconds']) ~ " ("
        ~ threshold['said'] ~ ")") }}
{% endmacro %}


{# Seconds as the largest whole units, e.g. `2 d 3 h`, `45 min`. #}
{% macro stale_source_age_text(seconds) %}
    {%- set seconds = seconds | int -%}
    {%- set days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60 -%}
    {%- set parts = [] -%}
    {%- if days %}{% do parts.append(days ~ ' d') %}{% endif -%}
    {%- if hours %}{% do parts.append(hours ~ ' h') %}{% endif -%}
    {%- if minutes and not days %}{% do parts.append(minutes ~ ' min') %}{% endif -%}
    {{ return(parts | join(' ') or seconds ~ ' s') }}
{% endmacro %}
