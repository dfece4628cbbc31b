-- nmspropositionrcp: {propositions} generated rows (ids 1..n), 31 guaranteed
-- edge-case rows (ids n+1..n+31, row n+k carries edge case k), the second copies
-- of duplicated ids, and the placeholder row 0. Edge cases and fractions: see the
-- list at the top of demo_data.sql (codes of pg_temp.prop_edge).
--
-- Shape of the statement: nested subqueries, each fenced with "offset 0" so that
-- the planner computes a column once per row instead of inlining its expression
-- everywhere it is used.
-- Innermost first:
--   g: row number and the draws that feed multi-branch helpers
--   a: edge-case code
--   b: inbound or outbound, delivery of the plan, week and weekday, duplicate flags
--   c: join to the delivery plan (small hash join on the generated key): the
--      final ids, status, weight, rank, day and time of day
--   d: tsevent (epoch seconds)
--   e: tslastmodified, one or two copies per row      k: which copy is the newer
-- Recipients are drawn from 1..{recipients} (about a fifth of the row count), so
-- they repeat.

insert into {schema}.nmspropositionrcp (
    ipropositionid, iinteractionid, iofferid, iofferspaceid, irecipientid, ideliveryid,
    istatus, tsevent, tslastmodified, dweight, irank
)
values (0, 0, 0, 0, 0, 0, 1, '2025-01-01 12:00:00+00', '2025-01-01 12:00:00+00', 50, 1);

insert into {schema}.nmspropositionrcp (
    ipropositionid, iinteractionid, iofferid, iofferspaceid, irecipientid, ideliveryid,
    istatus, tsevent, tslastmodified, dweight, irank
)
select
    e.n,
    10000000000 + e.n,
    e.offer,
    e.space,
    e.recipient,
    e.delivery,
    -- the copy with the latest tslastmodified has the real status
    case when k.newer then e.status else pg_temp.prop_prior_status(e.status) end,
    to_timestamp(e.ts),
    -- a duplicated id: the newer copy was updated again 1 to 49 hours later
    case when not e.dup then to_timestamp({modified_shift} + e.lm)
         when k.newer then to_timestamp({modified_shift} + e.lm + 3600 + floor(pg_temp.rnd(e.n, 18) * 172800))
         when e.null_lm then null
         else to_timestamp({modified_shift} + e.lm) end,
    e.weight,
    e.rank
from (
    select
        d.*,
        -- responses (interested, accepted, rejected) come hours to days later
        coalesce(d.ts, 1735689600 + floor(pg_temp.rnd(d.n, 22) * 63072000))
        + case when d.status in (2, 3, 5) then 600 + floor(pg_temp.rnd(d.n, 21) * 259200)
               else floor(pg_temp.rnd(d.n, 21) * 30) end as lm,
        -- a duplicated id gets a second copy
        generate_series(1, case when d.dup then 2 else 1 end) as copy
    from (
        select
            c.*,
            case when c.edge = 16 then null
                 when c.midnight then pg_temp.near_midnight(c.day, pg_temp.rnd(c.n, 8))
                 else 1735689600 + c.day * 86400 + c.secs end as ts
        from (
            select
                b.n,
                b.edge,
                b.dup,
                b.newer_second,
                b.null_lm,
                b.midnight,
                case b.edge
                    when 1 then null
                    when 2 then 0
                    when 3 then 90001 + (b.n % 3)::integer       -- not in nmsoffer
                    when 28 then 7                               -- duplicated key
                    else case when b.inbound
                              then 1 + floor(pg_temp.rnd(b.n, 9) ^ 1.5 * 300)::integer
                              else 1 + (p.offer_base + floor(pg_temp.rnd(b.n, 9) * p.n_offers)::integer * 41) % 300
                         end
                end as offer,
                case b.edge
                    when 6 then 0
                    when 7 then null
                    when 8 then 901 + (b.n % 3)::integer         -- not in nmsofferspace
                    when 9 then 31                               -- ichannel NULL
                    when 10 then 32                              -- ichannel 57
                    when 11 then 0
                    when 12 then 0
                    when 13 then 0
                    when 28 then 5                               -- duplicated key
                    else case when b.inbound
                              -- inbound spaces have consecutive ids, the web site's first
                              then (select min(s.iofferspaceid) from pg_temp.demo_space as s where s.inbound)
                                   + floor(pg_temp.rnd(b.n, 10) ^ 1.5
                                           * (select count(*) from pg_temp.demo_space as s where s.inbound))::integer
                              else p.first_space + floor(pg_temp.rnd(b.n, 10) * p.n_spaces)::integer
                         end
                end as space,
                case b.edge
                    when 17 then 0
                    when 18 then null
                    else 1 + floor(pg_temp.rnd(b.n, 11) * {recipients})::integer
                end as recipient,
                case when b.edge = 4 then null
                     when b.edge = 5 then 99001 + (b.n % 3)::integer  -- not in nmsdelivery
                     when b.inbound then 0
                     else b.d end as delivery,
                case b.edge
                    when 14 then null
                    when 15 then 7                               -- not a status code
                    when 21 then 0 when 22 then 1 when 23 then 2 when 24 then 3
                    when 25 then 4 when 26 then 5 when 27 then 99
                    else pg_temp.prop_status(b.r_status)
                end::smallint as status,
                case when b.edge = 19 then null
                     else ceil((1 - pg_temp.rnd(b.n, 13)) * 10000) / 100 end as weight,  -- (0, 100]
                pg_temp.offer_rank(b.r_rank) as rank,
                -- outbound: a day of the delivery's run, mostly its first; inbound: weekly rhythm
                case when b.inbound then pg_temp.day_index(b.w, b.dow)
                     else least(p.start_day + floor(p.days * pg_temp.rnd(b.n, 4) ^ 2)::integer, 729)
                end as day,
                case when b.inbound
                     then 21600 + floor(61200 * (pg_temp.rnd(b.n, 5) + pg_temp.rnd(b.n, 6)) / 2)
                     else p.send_secs + floor(pg_temp.rnd(b.n, 5) * 5400)
                end as secs
            from (
                select
                    a.n,
                    a.edge,
                    a.r_status,
                    a.r_rank,
                    case when a.edge = 0 then pg_temp.rnd(a.n, 2) < 0.25
                         when a.edge in (4, 5, 6, 7, 8, 9, 10, 11, 12, 28) then false
                         when a.edge = 13 then true
                         else pg_temp.rnd(a.n, 2) < 0.25 end as inbound,
                    case a.edge
                        when 11 then 3001
                        when 12 then 3002
                        when 28 then 2
                        else 1 + floor(pg_temp.rnd(a.n, 3) ^ 2 * 3000)::integer  -- big deliveries first
                    end as d,
                    floor(pg_temp.rnd(a.n, 19) * 105)::integer as w,
                    pg_temp.weekday(a.r_dow) as dow,
                    (a.n <= {propositions} and pg_temp.rnd(a.n, 15) < 0.005) or a.edge in (29, 30, 31) as dup,
                    case a.edge when 29 then true when 30 then false
                                else pg_temp.rnd(a.n, 16) < 0.5 end as newer_second,
                    case a.edge when 31 then true when 29 then false when 30 then false
                                else pg_temp.rnd(a.n, 17) < 0.05 end as null_lm,
                    a.edge = 20 or pg_temp.rnd(a.n, 7) < 0.03 as midnight
                from (
                    select
                        g.n,
                        case when g.n > {propositions} then (g.n - {propositions})::integer
                             else pg_temp.prop_edge(g.u) end as edge,
                        g.r_status,
                        g.r_rank,
                        g.r_dow
                    from (
                        select
                            n,
                            pg_temp.rnd(n, 1) as u,
                            pg_temp.rnd(n, 12) as r_status,
                            pg_temp.rnd(n, 14) as r_rank,
                            pg_temp.rnd(n, 20) as r_dow
                        from generate_series(1::bigint, {propositions} + 31) as n
                        offset 0
                    ) as g
                    offset 0
                ) as a
                offset 0
            ) as b
            inner join pg_temp.demo_delivery as p on p.d = b.d
            offset 0
        ) as c
        offset 0
    ) as d
    offset 0
) as e,
-- the newer copy of a duplicated id is the first or the second one
lateral (select not e.dup or (e.copy = 2) = e.newer_second as newer) as k;
