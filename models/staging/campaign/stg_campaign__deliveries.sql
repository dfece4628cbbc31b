with

source as (

    select * from {{ source('campaign', 'nmsdelivery') }}

),

renamed as (

    select
        ideliveryid::integer as delivery_id,
        slabel::{{ sql_type('text') }} as delivery_label,
        sinternalname::{{ sql_type('text') }} as delivery_internal_name,
        imessagetype::smallint as message_type_code,
        {{ column_or_null(source('campaign', 'nmsdelivery'), 'tslastmodified', 'timestamptz') }} as last_modified_at
    from source
    -- key 0 is Campaign's placeholder row, not a delivery
    where ideliveryid is distinct from 0

),

deduplicated as (

    {{ keep_latest_per_key(
        'renamed', 'delivery_id',
        'last_modified_at desc nulls last, message_type_code asc nulls last, delivery_label asc nulls last'
    ) }}

),

final as (

    select
        delivery_id,
        delivery_label,
        delivery_internal_name,
        message_type_code,
        last_modified_at
    from deduplicated

)

select * from final
