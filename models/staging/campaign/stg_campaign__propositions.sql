with

-- each key once: of a key held more than once, the latest copy
source as (

    {{ latest_fact_rows(campaign_facts()['nmspropositionrcp'], ref('base_campaign__proposition_repeated_keys')) }}

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
        dweight::{{ sql_type('double precision') }} as weight,
        irank::smallint as offer_rank
    from source
    -- key 0 is Campaign's placeholder row, not a proposition
    where ipropositionid is distinct from 0

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
    from renamed

)

select * from final
