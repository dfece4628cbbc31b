-- Campaign Classic's physical tables read by the cubes, as Campaign creates them
-- on PostgreSQL (unquoted, so lower case). Column names and types follow
-- the contract (docs/contract.md). Primary keys are deliberately NOT declared: replicas
-- and exports of Campaign tables can carry duplicate keys, and the demo data
-- must be able to show how the models deal with them.
-- The schema name is substituted by the loader (see campaign_cubes/demo.py).

create table if not exists {schema}.nmsoffer (
    iofferid integer,
    sname varchar(64),
    slabel varchar(128),
    scode varchar(64),
    icategoryid integer,
    istatus smallint,
    tsstart timestamptz,
    tsend timestamptz
);

create table if not exists {schema}.nmsofferspace (
    iofferspaceid integer,
    sname varchar(64),
    slabel varchar(128),
    ichannel smallint
);

create table if not exists {schema}.nmsdelivery (
    ideliveryid integer,
    slabel varchar(128),
    sinternalname varchar(64),
    imessagetype smallint
);

create table if not exists {schema}.nmspropositionrcp (
    ipropositionid bigint,
    iinteractionid bigint,
    iofferid integer,
    iofferspaceid integer,
    irecipientid integer,
    ideliveryid integer,
    istatus smallint,
    tsevent timestamptz,
    tslastmodified timestamptz,
    dweight double precision,
    irank smallint
);

create table if not exists {schema}.nmseventhisto (
    bieventhistoid bigint,
    stype varchar(64),
    istatus smallint,
    iwishedchannel smallint,
    ideliveryid integer,
    tscreated timestamptz,
    tsprocessing timestamptz,
    tsprocessed timestamptz,
    tslastmodified timestamptz,
    sexternalid varchar(255),
    sorigin varchar(64),
    semail varchar(128),
    smobilephone varchar(32),
    slanguage varchar(16),
    scountrycode varchar(16),
    mdata text
);

create table if not exists {schema}.nmsrtevent (
    irteventid bigint,
    stype varchar(64),
    istatus smallint,
    iwishedchannel smallint,
    ideliveryid integer,
    tscreated timestamptz,
    tsprocessing timestamptz,
    tsprocessed timestamptz,
    tslastmodified timestamptz,
    sexternalid varchar(255),
    sorigin varchar(64),
    semail varchar(128),
    smobilephone varchar(32),
    slanguage varchar(16),
    scountrycode varchar(16),
    mdata text
);

create table if not exists {schema}.nmsbatchevent (
    ibatcheventid bigint,
    stype varchar(64),
    istatus smallint,
    iwishedchannel smallint,
    ideliveryid integer,
    tscreated timestamptz,
    tsprocessing timestamptz,
    tsprocessed timestamptz,
    tslastmodified timestamptz,
    sexternalid varchar(255),
    sorigin varchar(64),
    semail varchar(128),
    smobilephone varchar(32),
    slanguage varchar(16),
    scountrycode varchar(16),
    mdata text
);
