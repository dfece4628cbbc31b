-- One Message Center event table: nmseventhisto, nmsrtevent or nmsbatchevent
-- (run once per table; key column and salt differ). Keys 1..n for the generated
-- rows, n+1..n+21 for the guaranteed edge-case rows (row n+k carries edge case k),
-- second copies of duplicated keys, and the placeholder row 0. Edge cases and
-- fractions: see the list at the top of demo_data.sql (codes of pg_temp.event_edge).
--
-- Layers, innermost first (each fenced with "offset 0", see demo_propositions.sql):
--   g: row number and the draws that feed multi-branch helpers
--   a: edge-case code, week and weekday       b: day, event type, recipient, flags
--   c: status, channel, event type, caller attributes, processing delays
--   d: base time t0 (epoch seconds)           e: e-mail / phone by channel, timestamps
--   f: tslastmodified, one or two copies per row
-- 36 event types, the most frequent first (ORDER_CONFIRMATION about 17 %); each
-- type has a preferred channel used 80 % of the time. Pending and processing events
-- only occur in the last two days (the queue of a live instance): 10 % each of those
-- days' events. Processing starts 0.05-3 s after reception and takes 0.2 s to
-- 5 min (median ~5 s); tooOld events expire after 1-24 h; tsprocessed is NULL for
-- pending, processing, deliveryFailed and routingFailed events, and for half of
-- those with an unknown status.

insert into {schema}.{table} (
    {key}, stype, istatus, iwishedchannel, ideliveryid, tscreated, tsprocessing, tsprocessed,
    tslastmodified, sexternalid, sorigin, semail, smobilephone, slanguage, scountrycode, mdata
)
values (0, 'ORDER_CONFIRMATION', 2, 0, 0, '2025-01-01 08:00:00+00', '2025-01-01 08:00:00.5+00',
        '2025-01-01 08:00:02.5+00', '2025-01-01 08:00:02.5+00', '', '', '', '', '', '', '');

insert into {schema}.{table} (
    {key}, stype, istatus, iwishedchannel, ideliveryid, tscreated, tsprocessing, tsprocessed,
    tslastmodified, sexternalid, sorigin, semail, smobilephone, slanguage, scountrycode, mdata
)
select
    f.n,
    f.stype,
    case when k.newer then f.status else pg_temp.event_prior_status(f.status) end,
    f.channel,
    f.ideliveryid,
    to_timestamp(f.created),
    -- the stale copy of a duplicated key was still pending (0) or processing (1)
    case when k.newer or pg_temp.event_prior_status(f.status) = 1 then to_timestamp(f.processing) end,
    case when k.newer then to_timestamp(f.processed) end,
    -- a duplicated key: the newer copy was updated again 1 s to 10 min later
    case when not f.dup then to_timestamp({modified_shift} + f.lm)
         when k.newer then to_timestamp({modified_shift} + f.lm + 1 + floor(pg_temp.rnd(f.n, {salt} + 18) * 600))
         when f.null_lm then null
         else to_timestamp({modified_shift} + f.lm) end,
    f.sexternalid,
    f.sorigin,
    f.semail,
    f.smobilephone,
    f.slanguage,
    f.scountrycode,
    f.mdata
from (
    select
        e.*,
        coalesce(e.processed, e.processing, e.t0) + floor(pg_temp.rnd(e.n, {salt} + 17) * 5000) / 1000 as lm,
        generate_series(1, case when e.dup then 2 else 1 end) as copy    -- duplicated key: 2 copies
    from (
        select
            d.*,
            case when d.edge in (9, 10) then null else d.t0 end as created,
            case when d.edge = 9 or d.status = 0 then null else d.t0 + d.start_delay end as processing,
            case when d.edge = 9 then null
                 when d.status in (2, 3) then d.t0 + d.start_delay + d.run_secs
                 when d.status = 6 then d.t0 + 3600 + floor(pg_temp.rnd(d.n, {salt} + 13) * 82800)
                 when d.status in (0, 1, 4, 5) then null
                 when pg_temp.rnd(d.n, {salt} + 14) < 0.5 then d.t0 + d.start_delay + d.run_secs
            end as processed,
            case when d.channel = 0 then 'customer' || d.rid || '@example.com' end as semail,
            case when d.channel = 1 then '+336' || lpad(d.rid, 8, '0') end as smobilephone
        from (
            select
                c.*,
                case when c.midnight
                     then pg_temp.near_midnight(c.day, c.r_midt)
                     else 1735689600 + c.day * 86400 + c.secs
                end as t0
            from (
                select
                    b.n,
                    b.edge,
                    b.dup,
                    b.newer_second,
                    b.null_lm,
                    b.midnight,
                    b.day,
                    b.rid::text as rid,                          -- converted once, used 3 times
                    pg_temp.rnd(b.n, {salt} + 10) as r_midt,
                    case b.edge
                        when 1 then null
                        when 2 then ''
                        when 3 then '   '
                        when 4 then ' ORDER_CONFIRMATION '
                        else (array['ORDER_CONFIRMATION', 'SHIPPING_NOTICE', 'PASSWORD_RESET',
                                    'DELIVERY_CONFIRMATION', 'ACCOUNT_CREATED', 'PAYMENT_RECEIVED',
                                    'OTP_CODE', 'CART_ABANDONED', 'INVOICE_AVAILABLE', 'WELCOME',
                                    'LOGIN_ALERT', 'BACK_IN_STOCK', 'PRICE_DROP', 'PAYMENT_FAILED',
                                    'REFUND_ISSUED', 'RETURN_AUTHORIZED', 'ORDER_CANCELLED',
                                    'APPOINTMENT_REMINDER', 'APPOINTMENT_CONFIRMED',
                                    'BOOKING_CONFIRMATION', 'BOOKING_CANCELLED', 'CHECKIN_REMINDER',
                                    'BOARDING_PASS', 'FLIGHT_DELAY', 'EMAIL_VERIFICATION',
                                    'PROFILE_UPDATED', 'SUBSCRIPTION_RENEWAL',
                                    'SUBSCRIPTION_EXPIRING', 'LOYALTY_POINTS', 'BIRTHDAY_GREETING',
                                    'NEWSLETTER_OPTIN', 'PICKUP_READY', 'STATEMENT_READY',
                                    'CONTRACT_SIGNED', 'SURVEY_INVITE', 'TICKET_UPDATE'])[b.type_idx]
                    end::varchar(64) as stype,
                    case b.edge
                        when 5 then null
                        when 6 then 57                           -- not a status code
                        when 10 then 2
                        when 12 then 0 when 13 then 1 when 14 then 2 when 15 then 3
                        when 16 then 4 when 17 then 5 when 18 then 6
                        else pg_temp.event_status(b.r_status, b.day >= 728)
                    end::smallint as status,
                    case b.edge
                        when 7 then null
                        when 8 then 57                           -- not a channel code
                        else case when pg_temp.rnd(b.n, {salt} + 5) < 0.8
                                  -- preferred channel of each type, same order as the types
                                  then (array[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 40, 41, 0, 0, 0, 0,
                                              1, 0, 0, 0, 42, 40, 1, 0, 0, 0, 0, 40, 0, 0, 1, 0,
                                              0, 0, 0])[b.type_idx]
                                  else pg_temp.channel_mix(b.r_channel) end
                    end::smallint as channel,
                    5000 + b.type_idx as ideliveryid,            -- one template per type
                    case when b.midnight then 0
                         when pg_temp.rnd(b.n, {salt} + 6) < 0.15
                         then floor(pg_temp.rnd(b.n, {salt} + 7) * 86400000) / 1000    -- round the clock
                         else 25200 + floor((pg_temp.rnd(b.n, {salt} + 7) + pg_temp.rnd(b.n, {salt} + 8))
                                            * 27000000) / 1000                        -- 07:00..22:00
                    end as secs,
                    floor(50 + 3000 * pg_temp.rnd(b.n, {salt} + 11) ^ 3) / 1000 as start_delay,
                    floor(200 + 300000 * pg_temp.rnd(b.n, {salt} + 12) ^ 6) / 1000 as run_secs,
                    'EXT-' || b.n as sexternalid,
                    ((array['web', 'mobileApp', 'pos', 'backOffice', 'api'])
                        [1 + floor(pg_temp.rnd(b.n, {salt} + 15) * 5)::integer])::varchar(64) as sorigin,
                    ((array['en', 'en', 'fr', 'de', 'es', 'it'])[b.locale])::varchar(16) as slanguage,
                    ((array['US', 'GB', 'FR', 'DE', 'ES', 'IT'])[b.locale])::varchar(16) as scountrycode,
                    '<ctx><customer id="' || b.rid || '"/><reference>EXT-' || b.n || '</reference></ctx>' as mdata
                from (
                    select
                        a.n,
                        a.edge,
                        a.r_status,
                        a.r_channel,
                        1 + floor(pg_temp.rnd(a.n, {salt} + 2) ^ 2 * 36)::integer as type_idx,
                        pg_temp.day_index(a.w, a.dow) as day,
                        1 + floor(pg_temp.rnd(a.n, {salt} + 16) * {recipients})::integer as rid,
                        case when a.r_locale < 0.35 then 1 when a.r_locale < 0.50 then 2
                             when a.r_locale < 0.70 then 3 when a.r_locale < 0.85 then 4
                             when a.r_locale < 0.95 then 5 else 6 end as locale,
                        (a.n <= {rows} and pg_temp.rnd(a.n, {salt} + 19) < 0.005)
                            or a.edge in (19, 20, 21) as dup,
                        case a.edge when 19 then true when 20 then false
                                    else pg_temp.rnd(a.n, {salt} + 20) < 0.5 end as newer_second,
                        case a.edge when 21 then true when 19 then false when 20 then false
                                    else pg_temp.rnd(a.n, {salt} + 21) < 0.05 end as null_lm,
                        a.edge = 11 or pg_temp.rnd(a.n, {salt} + 4) < 0.03 as midnight
                    from (
                        select
                            g.n,
                            case when g.n > {rows} then (g.n - {rows})::integer
                                 else pg_temp.event_edge(g.u) end as edge,
                            g.r_status,
                            g.r_channel,
                            floor(pg_temp.rnd(g.n, {salt} + 3) * 105)::integer as w,
                            pg_temp.weekday(g.r_dow) as dow,
                            g.r_locale
                        from (
                            select
                                n,
                                pg_temp.rnd(n, {salt} + 1) as u,
                                pg_temp.rnd(n, {salt} + 22) as r_status,
                                pg_temp.rnd(n, {salt} + 23) as r_channel,
                                pg_temp.rnd(n, {salt} + 24) as r_dow,
                                pg_temp.rnd(n, {salt} + 25) as r_locale
                            from generate_series(1::bigint, {rows} + 21) as n
                            offset 0
                        ) as g
                        offset 0
                    ) as a
                    offset 0
                ) as b
                offset 0
            ) as c
            offset 0
        ) as d
        offset 0
    ) as e
    offset 0
) as f,
-- the newer copy of a duplicated key is the first or the second one
lateral (select not f.dup or (f.copy = 2) = f.newer_second as newer) as k;
