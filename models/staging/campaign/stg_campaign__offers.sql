with

source as (

    select * from {{ source('campaign', 'nmsoffer') }}

),

renamed as (

    select
        iofferid::integer as offer_id,
        sname::{{ sql_type('text') }} as offer_name,
        slabel::{{ sql_type('text') }} as offer_label,
        scode::{{ sql_type('text') }} as offer_code,
        icategoryid::integer as category_id,
        istatus::smallint as offer_status_code,
        tsstart as valid_from,
        tsend as valid_to,
        {{ column_or_null(source('campaign', 'nmsoffer'), 'tslastmodified', 'timestamptz') }} as last_modified_at
    from source
    -- key 0 is Campaign's placeholder row, not an offer
    where iofferid is distinct from 0

),

deduplicated as (

    {{ keep_latest_per_key(
        'renamed', 'offer_id',
        'last_modified_at desc nulls last, offer_label asc nulls last, offer_name asc nulls last'
    ) }}

),

final as (

    select
        offer_id,
        offer_name,
        offer_label,
        offer_code,
        category_id,
        offer_status_code,
        valid_from,
        valid_to,
        last_modified_at
    from deduplicated

)

select * from final
