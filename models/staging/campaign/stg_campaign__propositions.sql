with

source as (

    -- the physical row keeps apart rows that have no key (see deduplicated)
    select
        *,
        {{ physical_row_id() }} as source_row
    from {{ source('campaign', 'nmspropositionrcp') }}

),

renamed as (

    select
        ipropositionid::bigint as proposition_id,
        iinteractionid::bigint as interaction_id,
        coalesce(iofferid, 0)::integer as offer_id,
        iofferspaceid::integer as offer_space_id,
        irecipientid::integer as recipient_id,
        coalesce(ideliveryid, 0)::integer as delivery_id,
        istatus::smallint as proposition_status_code,
        tsevent as proposed_at,
        tslastmodified as last_modified_at,
        dweight::double precision as weight,
        irank::smallint as offer_rank,
        source_row
    from source
    -- key 0 is Campaign's placeholder row, not a proposition
    where ipropositionid is distinct from 0

),

deduplicated as (

    {{ keep_latest_per_key(
        'renamed', 'proposition_id',
        'last_modified_at desc nulls last, proposition_status_code desc nulls last, proposed_at desc nulls last'
    ) }}

),

final as (

    select
        proposition_id,
        interaction_id,
        offer_id,
        offer_space_id,
        recipient_id,
        delivery_id,
        proposition_status_code,
        proposed_at,
        last_modified_at,
        weight,
        offer_rank
    from deduplicated

)

select * from final
