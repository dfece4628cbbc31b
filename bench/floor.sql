-- The floor of bench/run.py: both aggregates of the contract (docs/contract.md) written as
-- one bare `create table ... as select ... group by` each, straight from the
-- Campaign tables, as a competent engineer would write them by hand for speed:
-- no views, no tests, no audit, no publication. bench/run.py checks that they
-- produce exactly the rows the project publishes.
--
-- Placeholders, filled by bench/run.py with psycopg2.sql (so no braces elsewhere):
--   source            schema holding the Campaign tables
--   target            schema the two tables are created in
--   timezone          the reporting time zone (a literal)
--   channels          VALUES (code, label) of seeds/campaign_channels.csv
--   event_statuses    VALUES (code, name, label) of seeds/campaign_event_statuses.csv
--   offer_modified, space_modified, delivery_modified
--                     tslastmodified, or NULL when the lookup has no such column
-- Statements are separated by a line holding only `-- statement`.
--
-- Rules, in the order the specification gives them:
--   * key 0 (Campaign's placeholder row) is not data; a NULL key is a row of its own;
--   * a key seen twice counts once: latest tslastmodified, then the higher status,
--     then the later date (the staging models' order);
--   * lookups with a duplicated key keep one row: latest tslastmodified, then the
--     smallest channel / label (the staging models' tie-break), so a join never
--     multiplies rows;
--   * the channel of a proposition is its space's, else its delivery's, else -1;
--   * unknown codes and links get explicit labels; dates in the reporting zone.
-- Written for speed where it was measured to matter (docs/performance.md): lookups
-- deduplicated in CTEs the planner may inline (not materialized); facts in one
-- sorted pass (DISTINCT ON, the row's ctid keeping NULL keys apart instead of a
-- second scan); labels joined after the aggregation. Variants measured no faster
-- at 1 M rows: row_number() instead of DISTINCT ON; DISTINCT ON + UNION ALL of the
-- NULL keys; distinct recipients counted in two steps (group by grain and
-- recipient, then by grain); date_part() (double precision) instead of extract()
-- (numeric) for durations.

-- statement
create table {target}.agg_nmspropositionrcp_full as
with

channels (channel_code, channel_label) as (
    values {channels}
),

offers as not materialized (
    select distinct on (iofferid) iofferid, sname::text as sname, slabel::text as slabel
    from {source}.nmsoffer
    where iofferid <> 0
    order by iofferid, {offer_modified} desc nulls last, slabel::text nulls last, sname::text nulls last
),

spaces as not materialized (
    select distinct on (iofferspaceid) iofferspaceid, ichannel
    from {source}.nmsofferspace
    where iofferspaceid <> 0
    order by iofferspaceid, {space_modified} desc nulls last, ichannel nulls last, slabel::text nulls last
),

deliveries as not materialized (
    select distinct on (ideliveryid) ideliveryid, slabel::text as slabel, imessagetype
    from {source}.nmsdelivery
    where ideliveryid <> 0
    order by ideliveryid, {delivery_modified} desc nulls last, imessagetype nulls last, slabel::text nulls last
),

propositions as (
    -- one row per key (the latest copy); a row without a key (NULL) is a row of its own
    select distinct on (ipropositionid, case when ipropositionid is null then ctid end)
        iofferid, iofferspaceid, ideliveryid, irecipientid, istatus, tsevent, dweight
    from {source}.nmspropositionrcp
    where ipropositionid is distinct from 0
    order by
        ipropositionid, case when ipropositionid is null then ctid end,
        tslastmodified desc nulls last, istatus desc nulls last, tsevent desc nulls last
),

aggregated as (
    select
        (p.tsevent at time zone {timezone})::date as proposition_date,
        coalesce(s.ichannel, d.imessagetype, -1)::smallint as channel_code,
        coalesce(p.ideliveryid, 0) as delivery_id,
        coalesce(p.iofferid, 0) as offer_id,
        count(*) as propositions,
        count(*) filter (where p.istatus = 1) as presented,
        count(*) filter (where p.istatus = 3) as accepted,
        count(*) filter (where p.istatus = 5) as rejected,
        count(*) filter (where p.istatus = 99) as control_group,
        count(distinct nullif(p.irecipientid, 0)) as recipients,
        sum(p.dweight) as total_weight
    from propositions as p
    left join spaces as s on p.iofferspaceid = s.iofferspaceid
    left join deliveries as d on coalesce(p.ideliveryid, 0) = d.ideliveryid
    group by 1, 2, 3, 4
)

select
    a.proposition_date,
    date_trunc('week', a.proposition_date)::date as proposition_week,
    date_trunc('month', a.proposition_date)::date as proposition_month,
    make_date(
        extract(year from a.proposition_date)::integer,
        case when extract(month from a.proposition_date) <= 6 then 1 else 7 end, 1
    ) as proposition_semester,
    extract(year from a.proposition_date)::integer as proposition_year,
    a.channel_code,
    case
        when a.channel_code = -1 then 'unknown'
        when c.channel_code is null then 'unknown (' || a.channel_code || ')'
        else c.channel_label
    end as channel_label,
    a.delivery_id,
    case
        when a.delivery_id = 0 then 'no delivery'
        when d.ideliveryid is null then 'unknown (' || a.delivery_id || ')'
        else d.slabel
    end as delivery_label,
    a.offer_id,
    case
        when a.offer_id = 0 then 'no offer'
        when o.iofferid is null then 'unknown (' || a.offer_id || ')'
        else o.sname
    end as offer_name,
    case
        when a.offer_id = 0 then 'no offer'
        when o.iofferid is null then 'unknown (' || a.offer_id || ')'
        else o.slabel
    end as offer_label,
    a.propositions,
    a.presented,
    a.accepted,
    a.rejected,
    a.control_group,
    trim_scale(a.accepted::numeric / nullif(a.presented + a.accepted + a.rejected, 0)) as acceptance_rate,
    a.recipients,
    a.total_weight
from aggregated as a
left join channels as c on a.channel_code = c.channel_code
left join deliveries as d on a.delivery_id = d.ideliveryid
left join offers as o on a.offer_id = o.iofferid;

-- statement
create table {target}.agg_messagecenter_full as
with

channels (channel_code, channel_label) as (
    values {channels}
),

statuses (status_code, status_name, status_label) as (
    values {event_statuses}
),

events as (
    -- one row per key (the latest copy); a row without a key (NULL) is a row of its own
    select distinct on (bieventhistoid, case when bieventhistoid is null then ctid end)
        stype, istatus, iwishedchannel, tscreated, tsprocessed
    from {source}.nmseventhisto
    where bieventhistoid is distinct from 0
    order by
        bieventhistoid, case when bieventhistoid is null then ctid end,
        tslastmodified desc nulls last, istatus desc nulls last, tscreated desc nulls last
),

aggregated as (
    select
        (tscreated at time zone {timezone})::date as event_date,
        coalesce(iwishedchannel, -1)::smallint as channel_code,
        coalesce(istatus, -1)::smallint as status_code,
        coalesce(nullif(btrim(stype, e' \t\r\n'), ''), '(none)') as event_type,
        count(*) as events,
        count(tsprocessed) as processed_events,
        avg(extract(epoch from tsprocessed - tscreated))::double precision as avg_processing_seconds,
        max(extract(epoch from tsprocessed - tscreated))::double precision as max_processing_seconds
    from events
    group by 1, 2, 3, 4
)

select
    a.event_date,
    date_trunc('week', a.event_date)::date as event_week,
    date_trunc('month', a.event_date)::date as event_month,
    make_date(
        extract(year from a.event_date)::integer,
        case when extract(month from a.event_date) <= 6 then 1 else 7 end, 1
    ) as event_semester,
    extract(year from a.event_date)::integer as event_year,
    a.channel_code,
    case
        when a.channel_code = -1 then 'unknown'
        when c.channel_code is null then 'unknown (' || a.channel_code || ')'
        else c.channel_label
    end as channel_label,
    a.status_code,
    case
        when a.status_code = -1 then 'unknown'
        when s.status_code is null then 'unknown (' || a.status_code || ')'
        else s.status_name
    end as status_name,
    case
        when a.status_code = -1 then 'unknown'
        when s.status_code is null then 'unknown (' || a.status_code || ')'
        else s.status_label
    end as status_label,
    a.event_type,
    a.events,
    a.processed_events,
    a.avg_processing_seconds,
    a.max_processing_seconds
from aggregated as a
left join channels as c on a.channel_code = c.channel_code
left join statuses as s on a.status_code = s.status_code;
