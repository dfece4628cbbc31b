-- Demo / benchmark data for the Campaign tables: helpers, plans and lookups.
--
-- Run by campaign_cubes/demo.py inside ONE transaction, in this order:
--   demo_data.sql          helpers (pg_temp functions), plan tables (temp), 3 lookups
--   demo_propositions.sql  nmspropositionrcp
--   demo_events.sql        nmseventhisto, nmsrtevent, nmsbatchevent (same template, 3 runs)
--   demo_cleanup.sql       drops every helper: only the 7 Campaign tables remain
-- Placeholders filled by demo.py (psycopg2.sql, so no braces elsewhere in these
-- files): schema, seed_base (= seed * 1000), sizes and salts.
--
-- Everything is set-based and deterministic: every "random" draw is
-- pg_temp.rnd(row number, salt), a hash of (row number, seed * 1000 + salt)
-- mapped to [0, 1). random() is never used (parallel plans break setseed).
-- Timestamps are built from epoch seconds with to_timestamp(), so the data does
-- not depend on the session's TimeZone.
--
-- Edge cases (fractions of the generated rows; each is ALSO present at least once
-- as a guaranteed extra row appended after the generated ones, whatever the size):
--
-- every table
--   placeholder row with key 0 and plausible values (a model that forgets to drop
--   it counts/labels it: offer 0 "Default offer", space 0 channel 0, delivery 0
--   type 0, a processed ORDER_CONFIRMATION proposition/event on 2025-01-01)
-- lookups (fixed rows)
--   nmsoffer: key 7 twice (labels differ), slabel NULL for offer 13 and ~2 %,
--             sname NULL for offer 14
--   nmsofferspace: key 5 twice (labels differ), slabel NULL for space 21,
--             space 31 ichannel NULL, space 32 ichannel 57 (not a channel code)
--   nmsdelivery: key 2 twice (labels differ), slabel NULL for delivery 17 and ~1 %,
--             3001 imessagetype 130 (unknown), 3002 imessagetype NULL
-- nmspropositionrcp (at most one edge case per row; code = pg_temp.prop_edge)
--    1 iofferid NULL 0.2 %          2 iofferid 0 0.2 %       3 iofferid orphan 0.2 %
--    4 ideliveryid NULL 0.2 %       5 ideliveryid orphan 0.2 %
--      (ideliveryid 0 = inbound is ordinary: ~25 % of rows)
--    6 iofferspaceid 0 0.3 %        7 iofferspaceid NULL 0.2 %
--    8 iofferspaceid orphan 0.2 %   (6-8 have a delivery: channel falls back to it)
--    9 space 31 (ichannel NULL) 0.1 %            10 space 32 (ichannel 57) 0.1 %
--   11 delivery 3001 (type 130), space 0 0.1 %   12 delivery 3002 (type NULL), space 0 0.1 %
--   13 delivery 0 and space 0: no channel at all (-1) 0.1 %
--   14 istatus NULL 0.2 %           15 istatus 7 (unknown) 0.2 %
--   16 tsevent NULL 0.2 %           17 irecipientid 0 0.2 %  18 irecipientid NULL 0.2 %
--   19 dweight NULL 0.2 %
--   20 tsevent within an hour of UTC midnight: 3 % of all rows (independent draw)
--   21-27 istatus 0, 1, 2, 3, 4, 5, 99: ordinary mix (62 % presented, 12 % accepted,
--      10 % rejected, 8 % control, 3 % generated, 3 % interested, 2 % scheduled)
--   28 offer 7, space 5, delivery 2 (the duplicated lookup keys): ordinary
--   29-31 duplicate ipropositionid: 0.5 % of rows get a second copy, same values
--      except istatus and tslastmodified; half of the pairs have the newer copy
--      inserted second (29), half first (30); in 5 % of the pairs (31) the stale
--      copy has tslastmodified NULL
-- nmseventhisto, nmsrtevent, nmsbatchevent (code = pg_temp.event_edge)
--    1 stype NULL 0.2 %   2 stype '' 0.2 %   3 stype '   ' 0.2 %
--    4 stype ' ORDER_CONFIRMATION ' 0.2 %
--    5 istatus NULL 0.2 % 6 istatus 57 0.2 % 7 iwishedchannel NULL 0.2 %
--    8 iwishedchannel 57 0.2 %
--    9 tscreated NULL (tsprocessing, tsprocessed NULL too) 0.2 %
--   10 tscreated NULL but tsprocessing and tsprocessed set (status 2) 0.2 %
--   11 tscreated within an hour of UTC midnight: 3 % of all rows (independent draw)
--   12-18 istatus 0..6: ordinary mix (94 % processed, 2 % ignored, 2.5 % deliveryFailed,
--      1 % routingFailed, 0.5 % tooOld; pending and processing only in the last two
--      days, 10 % each of those days' events)
--   19-21 duplicate keys: as 29-31 above (0.5 % of rows); the stale copy is still
--      pending or processing (tsprocessed NULL)
--   nmsrtevent and nmsbatchevent keys both start at 1: their key spaces overlap.

-- ---------------------------------------------------------------------------
-- Helpers. All are one-expression SQL functions so that the planner inlines
-- them; callers pass plain columns to those that use a parameter several times
-- (an expensive argument would prevent inlining or be recomputed).
-- ---------------------------------------------------------------------------

-- Uniform draw in [0, 1) from (row number, salt, seed): 53 hash bits, exact in a double.
create or replace function pg_temp.rnd(n bigint, salt integer)
returns double precision language sql immutable parallel safe as $$
    select (hashint8extended(n, {seed_base} + salt) & 9007199254740991)::double precision
           * 1.1102230246251565e-16::double precision      -- 2 ^ -53
$$;

-- Day of week (0 = Monday) with a weekly rhythm for inbound traffic and events.
create or replace function pg_temp.weekday(r double precision)
returns integer language sql immutable parallel safe as $$
    select case when r < 0.165 then 0 when r < 0.339 then 1 when r < 0.512 then 2
                when r < 0.678 then 3 when r < 0.835 then 4 when r < 0.926 then 5
                else 6 end
$$;

-- Day of week on which marketers send deliveries: Tuesday and Thursday first.
create or replace function pg_temp.send_weekday(r double precision)
returns integer language sql immutable parallel safe as $$
    select case when r < 0.12 then 0 when r < 0.37 then 1 when r < 0.55 then 2
                when r < 0.80 then 3 when r < 0.92 then 4 when r < 0.97 then 5
                else 6 end
$$;

-- Day index 0..729 (0 = 2025-01-01, a Wednesday) of weekday dow in week w (0..104,
-- week 0 starts Monday 2024-12-30). Days outside the range move one week in, so
-- the weekday (the rhythm) is kept.
create or replace function pg_temp.day_index(w integer, dow integer)
returns integer language sql immutable parallel safe as $$
    select w * 7 + dow - 2
           + case when w * 7 + dow - 2 < 0 then 7 when w * 7 + dow - 2 > 729 then -7 else 0 end
$$;

-- Epoch seconds of a time within an hour of UTC midnight (23:00 the day before
-- .. 01:00), for day index day; never before 2025-01-01.
create or replace function pg_temp.near_midnight(day integer, r double precision)
returns double precision language sql immutable parallel safe as $$
    select 1735689600 + greatest(day, 1) * 86400 - 3600 + floor(r * 7200)
$$;

-- Proposition edge-case code from one draw; the common case is tested first.
create or replace function pg_temp.prop_edge(u double precision)
returns integer language sql immutable parallel safe as $$
    select case when u >= 0.034 then 0
                when u < 0.002 then 1 when u < 0.004 then 2 when u < 0.006 then 3
                when u < 0.008 then 4 when u < 0.010 then 5 when u < 0.013 then 6
                when u < 0.015 then 7 when u < 0.017 then 8 when u < 0.018 then 9
                when u < 0.019 then 10 when u < 0.020 then 11 when u < 0.021 then 12
                when u < 0.022 then 13 when u < 0.024 then 14 when u < 0.026 then 15
                when u < 0.028 then 16 when u < 0.030 then 17 when u < 0.032 then 18
                else 19 end
$$;

-- Proposition status: 1 presented, 3 accepted, 5 rejected, 99 control group,
-- 0 generated, 2 interested, 4 scheduled.
create or replace function pg_temp.prop_status(r double precision)
returns smallint language sql immutable parallel safe as $$
    select (case when r < 0.62 then 1 when r < 0.74 then 3 when r < 0.84 then 5
                 when r < 0.92 then 99 when r < 0.95 then 0 when r < 0.98 then 2
                 else 4 end)::smallint
$$;

-- Status of the stale copy of a duplicated proposition: always different from
-- the latest one, and one of the two is counted (1, 3, 5 or 99).
create or replace function pg_temp.prop_prior_status(s smallint)
returns smallint language sql immutable parallel safe as $$
    select (case s when 1 then 0 when 99 then 0 else 1 end)::smallint
$$;

-- Event edge-case code from one draw.
create or replace function pg_temp.event_edge(u double precision)
returns integer language sql immutable parallel safe as $$
    select case when u >= 0.020 then 0
                when u < 0.002 then 1 when u < 0.004 then 2 when u < 0.006 then 3
                when u < 0.008 then 4 when u < 0.010 then 5 when u < 0.012 then 6
                when u < 0.014 then 7 when u < 0.016 then 8 when u < 0.018 then 9
                else 10 end
$$;

-- Event status, working hypothesis: 0 pending, 1 processing, 2 processed,
-- 3 ignored, 4 deliveryFailed, 5 routingFailed, 6 tooOld. Events still pending or
-- processing are recent ones (recent: the last two days of the data).
create or replace function pg_temp.event_status(r double precision, recent boolean)
returns smallint language sql immutable parallel safe as $$
    select (case when recent and r >= 0.9 then 0 when recent and r >= 0.8 then 1
                 when r >= 0.060 then 2 when r < 0.020 then 3 when r < 0.045 then 4
                 when r < 0.055 then 5 else 6 end)::smallint
$$;

-- Status of the stale copy of a duplicated event (it was still in the queue).
create or replace function pg_temp.event_prior_status(s smallint)
returns smallint language sql immutable parallel safe as $$
    select (case s when 0 then 1 when 1 then 0 when 5 then 0 when 6 then 0 else 1 end)::smallint
$$;

-- Channel mix of deliveries and events: email, SMS, then the three app channels.
create or replace function pg_temp.channel_mix(r double precision)
returns smallint language sql immutable parallel safe as $$
    select (case when r < 0.70 then 0 when r < 0.92 then 1 when r < 0.95 then 40
                 when r < 0.975 then 41 else 42 end)::smallint
$$;

-- Rank of an offer in a proposition, 1..5, mostly the first ones.
create or replace function pg_temp.offer_rank(r double precision)
returns smallint language sql immutable parallel safe as $$
    select (case when r < 0.40 then 1 when r < 0.65 then 2 when r < 0.82 then 3
                 when r < 0.93 then 4 else 5 end)::smallint
$$;

-- ---------------------------------------------------------------------------
-- Plans (temporary, dropped at commit and by demo_cleanup.sql): the layout of
-- the spaces and the schedule of every delivery, joined to the generated rows
-- on their generated keys.
-- ---------------------------------------------------------------------------

-- Offer spaces. inbound: offered on the space without a delivery (ideliveryid 0).
-- Web-ish inbound channels use seed codes: 120 other (web site, kiosk),
-- 2 phone (call centre), 20 Facebook, 25 Twitter.
create temp table demo_space on commit drop as
select v.iofferspaceid, v.sname, v.slabel, v.ichannel::smallint as ichannel, v.inbound
from (values
    (1, 'EMAIL_HEADER', 'Email header banner', 0, false),
    (2, 'EMAIL_HERO', 'Email hero block', 0, false),
    (3, 'EMAIL_BODY_1', 'Email body, first slot', 0, false),
    (4, 'EMAIL_BODY_2', 'Email body, second slot', 0, false),
    (5, 'EMAIL_FOOTER', 'Email footer', 0, false),
    (6, 'EMAIL_PS', 'Email postscript', 0, false),
    (7, 'SMS_MAIN', 'SMS main offer', 1, false),
    (8, 'SMS_LINK', 'SMS short link', 1, false),
    (9, 'SMS_REMINDER', 'SMS reminder', 1, false),
    (10, 'PUSH_MAIN', 'Push notification', 40, false),
    (11, 'PUSH_RICH', 'Push notification, rich media', 40, false),
    (12, 'IOS_PUSH', 'iOS push', 41, false),
    (13, 'IOS_PUSH_RICH', 'iOS push, rich media', 41, false),
    (14, 'ANDROID_PUSH', 'Android push', 42, false),
    (15, 'ANDROID_PUSH_RICH', 'Android push, rich media', 42, false),
    (16, 'WEB_HOME_HERO', 'Web site home page hero', 120, true),
    (17, 'WEB_HOME_SIDEBAR', 'Web site home page sidebar', 120, true),
    (18, 'WEB_PRODUCT_PAGE', 'Web site product page', 120, true),
    (19, 'WEB_CART', 'Web site cart', 120, true),
    (20, 'WEB_CHECKOUT', 'Web site checkout', 120, true),
    (21, 'WEB_ACCOUNT', null, 120, true),
    (22, 'WEB_SEARCH', 'Web site search results', 120, true),
    (23, 'APP_HOME', 'Mobile app home', 40, true),
    (24, 'APP_INBOX', 'Mobile app inbox', 40, true),
    (25, 'IOS_APP_BANNER', 'iOS app banner', 41, true),
    (26, 'ANDROID_APP_BANNER', 'Android app banner', 42, true),
    (27, 'CALL_CENTER_NBO', 'Call centre next best offer', 2, true),
    (28, 'CALL_CENTER_RETENTION', 'Call centre retention', 2, true),
    (29, 'FACEBOOK_FEED', 'Facebook feed', 20, true),
    (30, 'TWITTER_CARD', 'Twitter card', 25, true),
    -- edge cases, never drawn at random
    (31, 'LEGACY_SPACE', 'Legacy space without channel', null, false),
    (32, 'PARTNER_SPACE', 'Partner space (custom channel 57)', 57, false)
) as v (iofferspaceid, sname, slabel, ichannel, inbound);

-- Deliveries 1..3000 plus the two edge-case deliveries 3001 (type 130) and 3002
-- (type NULL). Delivery 2 (whose key is duplicated) is an email. Offers and spaces
-- are kept as (first, count) ranges rather than arrays: cheaper per generated row.
create temp table demo_delivery on commit drop as
select
    p.d,
    p.msgtype,
    p.start_day,
    p.days,
    p.send_secs,
    p.theme,
    -- a handful of offers (2..6): offer_base, offer_base + 41, ... modulo the 300 offers
    p.offer_base,
    p.n_offers,
    -- every outbound space of the delivery's channel (their ids are consecutive);
    -- space 0 when there is none
    coalesce(s.first_space, 0) as first_space,
    coalesce(s.n_spaces, 1) as n_spaces
from (
    select
        d,
        (case when d = 3001 then 130 when d = 3002 then null when d = 2 then 0
              else pg_temp.channel_mix(pg_temp.rnd(d, 401)) end)::smallint as msgtype,
        pg_temp.day_index(floor(pg_temp.rnd(d, 402) * 105)::integer,
                          pg_temp.send_weekday(pg_temp.rnd(d, 403))) as start_day,
        1 + floor(pg_temp.rnd(d, 404) ^ 2 * 5)::integer as days,        -- 1..5 days, mostly short
        (6 + floor(pg_temp.rnd(d, 405) * 13)::integer) * 3600 as send_secs,  -- 06:00..18:00 UTC
        2 + floor(pg_temp.rnd(d, 406) * 5)::integer as n_offers,
        floor(pg_temp.rnd(d, 407) * 300)::integer as offer_base,
        1 + floor(pg_temp.rnd(d, 408) * 20)::integer as theme
    from generate_series(1, 3002) as d
) as p
left join (
    select ichannel, min(iofferspaceid) as first_space, count(*)::integer as n_spaces
    from pg_temp.demo_space
    where not inbound
    group by ichannel
) as s on s.ichannel = p.msgtype;

-- ---------------------------------------------------------------------------
-- Lookups
-- ---------------------------------------------------------------------------

-- 300 offers; placeholder 0; key 7 twice; NULL labels.
insert into {schema}.nmsoffer (iofferid, sname, slabel, scode, icategoryid, istatus, tsstart, tsend)
values (0, 'OE0', 'Default offer', 'DEFAULT', 0, 0, null, null);

insert into {schema}.nmsoffer (iofferid, sname, slabel, scode, icategoryid, istatus, tsstart, tsend)
select
    o.o,
    case when o.o = 14 then null else 'OE' || o.o end,
    case when o.o = 13 or pg_temp.rnd(o.o, 411) < 0.02 then null
         else (array['Summer', 'Winter', 'Spring', 'Autumn', 'Welcome', 'Loyalty', 'Flash',
                     'VIP', 'Weekend', 'Holiday', 'Student', 'Family', 'Premium', 'Express',
                     'Back to school', 'Black Friday'])[1 + floor(pg_temp.rnd(o.o, 412) * 16)::integer]
              || ' '
              || (array['10% off shoes', 'free shipping', '2-for-1 coffee', 'credit card',
                        'travel insurance', 'phone upgrade', 'gym membership', 'streaming trial',
                        'gift card', 'home loan', 'savings account', 'car rental', 'hotel night',
                        'concert tickets', 'cooking class', 'wine box', 'spa voucher',
                        'book club', 'kids menu', 'bike service'])[1 + floor(pg_temp.rnd(o.o, 413) * 20)::integer]
    end,
    'OFR' || lpad(o.o::text, 5, '0'),
    1001 + floor(pg_temp.rnd(o.o, 414) * 20)::integer,             -- 20 categories
    -- offer status (illustrative, not read by the cubes): mostly live (3)
    (case when pg_temp.rnd(o.o, 415) < 0.80 then 3 when pg_temp.rnd(o.o, 415) < 0.90 then 2
          when pg_temp.rnd(o.o, 415) < 0.95 then 1 else 0 end)::smallint,
    to_timestamp(1735689600 + (floor(pg_temp.rnd(o.o, 416) * 700) - 90) * 86400),
    case when pg_temp.rnd(o.o, 417) < 0.10 then null                -- open-ended
         else to_timestamp(1735689600 + (floor(pg_temp.rnd(o.o, 416) * 700) - 90
                                          + 30 + floor(pg_temp.rnd(o.o, 418) * 365)) * 86400) end
from generate_series(1, 300) as o (o);

insert into {schema}.nmsoffer (iofferid, sname, slabel, scode, icategoryid, istatus, tsstart, tsend)
select iofferid, sname, coalesce(slabel, 'Offer 7') || ' (old version)', scode, icategoryid, 4, tsstart, tsend
from {schema}.nmsoffer
where iofferid = 7;

-- 32 spaces; placeholder 0 with channel 0; key 5 twice.
insert into {schema}.nmsofferspace (iofferspaceid, sname, slabel, ichannel)
values (0, 'DEFAULT_SPACE', 'Default space', 0);

insert into {schema}.nmsofferspace (iofferspaceid, sname, slabel, ichannel)
select iofferspaceid, sname, slabel, ichannel from pg_temp.demo_space order by iofferspaceid;

insert into {schema}.nmsofferspace (iofferspaceid, sname, slabel, ichannel)
select iofferspaceid, sname, slabel || ' (copy)', ichannel from pg_temp.demo_space where iofferspaceid = 5;

-- 3,002 deliveries; placeholder 0 with type 0; key 2 twice; NULL labels.
insert into {schema}.nmsdelivery (ideliveryid, slabel, sinternalname, imessagetype)
values (0, 'Default delivery', 'DM0', 0);

insert into {schema}.nmsdelivery (ideliveryid, slabel, sinternalname, imessagetype)
select
    p.d,
    case when p.d = 17 or pg_temp.rnd(p.d, 409) < 0.01 then null
         else (case p.msgtype when 0 then 'Newsletter' when 1 then 'SMS' when 40 then 'Push'
                              when 41 then 'iOS push' when 42 then 'Android push' else 'Campaign' end)
              || ' - '
              || (array['Spring sale', 'Summer collection', 'Back to school', 'Autumn offers',
                        'Black Friday', 'Christmas', 'New year', 'Winter sale', 'Loyalty club',
                        'Welcome series', 'Win-back', 'Birthday', 'Weekend deals', 'Flash sale',
                        'Product launch', 'Cross-sell', 'Renewal', 'Survey', 'Event invitation',
                        'Clearance'])[p.theme]
              || ' - '
              || to_char(date '2025-01-01' + p.start_day, 'YYYY-MM-DD')
    end,
    'DM' || p.d,
    p.msgtype
from pg_temp.demo_delivery as p
order by p.d;

insert into {schema}.nmsdelivery (ideliveryid, slabel, sinternalname, imessagetype)
select ideliveryid, coalesce(slabel, 'Delivery 2') || ' (resent)', sinternalname, imessagetype
from {schema}.nmsdelivery
where ideliveryid = 2;

-- Statistics for the plans, so that the generated rows are hash-joined to them.
analyze pg_temp.demo_space;
analyze pg_temp.demo_delivery;
