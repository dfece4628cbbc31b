with

source as (

    select * from {{ source('campaign', 'nmsofferspace') }}

),

renamed as (

    select
        iofferspaceid::integer as offer_space_id,
        sname::{{ sql_type('text') }} as offer_space_name,
        slabel::{{ sql_type('text') }} as offer_space_label,
        ichannel::smallint as channel_code,
        {{ column_or_null(source('campaign', 'nmsofferspace'), 'tslastmodified', 'timestamptz') }} as last_modified_at
    from source
    -- key 0 is Campaign's placeholder row, not a space
    where iofferspaceid is distinct from 0

),

deduplicated as (

    {{ keep_latest_per_key(
        'renamed', 'offer_space_id',
        'last_modified_at desc nulls last, channel_code asc nulls last, offer_space_label asc nulls last'
    ) }}

),

final as (

    select
        offer_space_id,
        offer_space_name,
        offer_space_label,
        channel_code,
        last_modified_at
    from deduplicated

)

select * from final
