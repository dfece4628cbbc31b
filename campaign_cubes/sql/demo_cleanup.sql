-- Drop every helper of the demo generator: only the 7 Campaign tables remain.
-- (The temp tables would also go at commit; dropping them here keeps the session
-- clean when the caller's connection stays open.)
drop table if exists pg_temp.demo_delivery;
drop table if exists pg_temp.demo_space;
drop function if exists pg_temp.rnd(bigint, integer);
drop function if exists pg_temp.weekday(double precision);
drop function if exists pg_temp.send_weekday(double precision);
drop function if exists pg_temp.day_index(integer, integer);
drop function if exists pg_temp.near_midnight(integer, double precision);
drop function if exists pg_temp.prop_edge(double precision);
drop function if exists pg_temp.prop_status(double precision);
drop function if exists pg_temp.prop_prior_status(smallint);
drop function if exists pg_temp.event_edge(double precision);
drop function if exists pg_temp.event_status(double precision, boolean);
drop function if exists pg_temp.event_prior_status(smallint);
drop function if exists pg_temp.channel_mix(double precision);
drop function if exists pg_temp.offer_rank(double precision);
