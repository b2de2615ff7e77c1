{#- KV cache rows: the WGSL load/store helpers of a cache binding, by the key's `kv` storage
    (kernels.KV_STORAGE):
      ""       the activation dtype A, today's layout. Loads bind array<vec4<A>>, stores array<A>.
      "f16x2"  f16 pairs in u32 words, byte-identical to an f16 (rows, width) array, so no
               shader-f16 is needed. Loads bind array<vec2<u32>> (entry i = elements 4i..4i+3,
               low half first), stores array<u32> (word i = elements 2i, 2i+1). A writer owns
               whole words: no two invocations may write the two halves of one word.
    The binding types come from kernels.kv_array_type(act, kv, unit); WGSL cannot pass a storage
    binding to a function, so each macro defines a function over one named binding.
    Import `as kvs` (`kv` is the key field). -#}

{#- fn fname(i) -> vec4<f32>: cache elements 4i..4i+3 of binding `arr` (unit "vec4"). -#}
{% macro load4_fn(fname, arr, kv) -%}
fn {{ fname }}(i: u32) -> vec4<f32> {
{% if kv == "f16x2" %}
  let w = {{ arr }}[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
{% else %}
  return vec4<f32>({{ arr }}[i]);
{% endif %}
}
{%- endmacro %}

{#- fn fname(i, v): cache elements 2i, 2i+1 of binding `arr` (unit "pair") = v. -#}
{% macro store2_fn(fname, arr, kv) -%}
fn {{ fname }}(i: u32, v: vec2<f32>) {
{% if kv == "f16x2" %}
  {{ arr }}[i] = pack2x16float(v);
{% else %}
  {{ arr }}[2u * i] = A(v.x);
  {{ arr }}[2u * i + 1u] = A(v.y);
{% endif %}
}
{%- endmacro %}

{#- Ring caches (a key's `ring` field R, 0: none; only sliding-window layers have one): the cache
    holds R rows and key position t lives in row t % R. ring_fn() declares RING and kv_row, the
    one place a template maps a position to its row; call it under `{% if ring %}` so a key
    without a ring renders as before. row(t): the row of position expression t, i.e. t itself
    (parenthesized when compound, as the templates wrote it) or kv_row(t). Keys iterate by
    position either way, so a ring changes which row is read, never the order of the sums. -#}
{% macro ring_fn() -%}
const RING: u32 = {{ ring }}u;  // cache rows (a ring): key position t lives in row t % RING

fn kv_row(t: u32) -> u32 {
  return t % RING;
}
{%- endmacro %}

{% macro row(t) -%}
{% if ring is defined and ring %}kv_row({{ t }}){% elif " " in t %}({{ t }}){% else %}{{ t }}{% endif %}
{%- endmacro %}
