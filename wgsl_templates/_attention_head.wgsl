{#- The opening of the cache attention kernels (attention_decode, attention_prefill), included
    after `{% set title = ... %}`: header, prelude, constants, the window / softcap options when
    set, the ring's row function when set. -#}
{% import "_common.wgsl" as c with context %}
{% import "_attention.wgsl" as att with context %}
{% import "_kv.wgsl" as kvs with context %}
{{ c.header(title) }}
{{ c.prelude() }}

{{ att.consts() }}
{% if window or softcap %}
{{ att.options() }}
{% endif %}
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}
