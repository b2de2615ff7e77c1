{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% import "_rope.wgsl" as rope with context %}
{% set f16x2 = kv is defined and kv == "f16x2" %}
{% set partial, long, tbl = rope.partial, rope.long, rope.tbl %}
{% set per_head = "SLOTS" if partial else "HALF" %}
{{ c.header("rotate_half rotary embedding at positions " ~ ("index in row" if packed is defined and packed else "p..p+n-1") ~ ("; rotated rows go to cache rows p..p+n-1" if to_cache else "") ~ ("; the cache holds f16 pairs in u32 words (kv f16x2): one invocation per (token, head, two adjacent pairs i, i+1), so it writes whole words" if f16x2 else "; one invocation per (token, head, pair)") ~ rope.extra) }}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;
const HD: u32 = {{ head_dim }}u;
const HALF: u32 = {{ half }}u;  // pairs (i, i + HALF) within each head
const WIDTH: u32 = {{ width }}u;
{{ rope.consts("are copied", "k", f16x2) }}
{% if ring is defined and ring %}

{{ kvs.ring_fn() }}
{% endif %}
{% if f16x2 %}
const QUARTER: u32 = {{ slots // 2 }}u;  // invocations per head: pairs (i, i + HALF) and (i + 1, i + 1 + HALF), i even

{{ kvs.store2_fn("store_cache", "cache", kv) }}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // head * QUARTER + i / 2
  let t = gid.y;
  if (j >= HEADS * QUARTER || t >= step.n) {
    return;
  }
  let head = j / QUARTER;
  let i = 2u * (j % QUARTER);
{% if partial %}
  if (i >= HALF) {  // features ROT + 2 (i - HALF) .. + 3 pass through: two whole words
    let e = head * HD + ROT + 2u * (i - HALF);
    let w = ({{ kvs.row("step.p + t") }} * WIDTH + e) / 2u;
    store_cache(w, vec2<f32>(f32(x[t * WIDTH + e]), f32(x[t * WIDTH + e + 1u])));
    store_cache(w + 1u, vec2<f32>(f32(x[t * WIDTH + e + 2u]), f32(x[t * WIDTH + e + 3u])));
    return;
  }
{% endif %}
{% if long %}
  let tbl = select(0u, HALF, step._pad0 > LONG_AFTER);  // _pad0: the forward call's end position
{% endif %}
  let ang = f32(step.p + t) * vec2<f32>(inv_freq[{{ tbl }}i], inv_freq[{{ tbl }}i + 1u]);
{{ rope.cos_sin("k") }}
  let src = t * WIDTH + head * HD + i;
  let x1 = vec2<f32>(f32(x[src]), f32(x[src + 1u]));
  let x2 = vec2<f32>(f32(x[src + HALF]), f32(x[src + HALF + 1u]));
  let dst = ({{ kvs.row("step.p + t") }} * WIDTH + head * HD + i) / 2u;  // u32 word of elements i, i + 1
  store_cache(dst, x1 * cs - x2 * sn);
  store_cache(dst + HALF / 2u, x2 * cs + x1 * sn);
}
{% else %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // head * HALF + i
  let t = gid.y;
  if (j >= HEADS * {{ per_head }} || t >= step.n) {
    return;
  }
  let head = j / {{ per_head }};
  let i = j % {{ per_head }};
{% if partial %}
  if (i >= HALF) {  // features ROT + 2 (i - HALF) and the next one pass through
    let e = head * HD + ROT + 2u * (i - HALF);
{% if to_cache %}
    cache[{{ kvs.row("step.p + t") }} * WIDTH + e] = x[t * WIDTH + e];
    cache[{{ kvs.row("step.p + t") }} * WIDTH + e + 1u] = x[t * WIDTH + e + 1u];
{% else %}
    out[t * WIDTH + e] = x[t * WIDTH + e];
    out[t * WIDTH + e + 1u] = x[t * WIDTH + e + 1u];
{% endif %}
    return;
  }
{% endif %}
{% if long %}
  let tbl = select(0u, HALF, step._pad0 > LONG_AFTER);  // _pad0: the forward call's end position
{% endif %}
{% if packed is defined and packed %}
  let ang = f32(t - u32(offsets[u32(rows[t])])) * inv_freq[i];  // a packed batch: the index within the row
{% else %}
  let ang = f32(step.p + t) * inv_freq[{{ tbl }}i];
{% endif %}
{{ rope.cos_sin("k") }}
  let src = t * WIDTH + head * HD + i;
  let x1 = f32(x[src]);
  let x2 = f32(x[src + HALF]);
{% if to_cache %}
  let dst = {{ kvs.row("step.p + t") }} * WIDTH + head * HD + i;
  cache[dst] = A(x1 * cs - x2 * sn);
  cache[dst + HALF] = A(x2 * cs + x1 * sn);
{% else %}
  out[src] = A(x1 * cs - x2 * sn);
  out[src + HALF] = A(x2 * cs + x1 * sn);
{% endif %}
}
{% endif %}
