{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% import "_rope.wgsl" as rope with context %}
{% set partial, long, tbl = rope.partial, rope.long, rope.tbl %}
{% if kv == "f16x2" %}
{{ c.header("rotary embedding at positions p..p+n-1: q rotated in place, rope(k) -> k_cache and v -> v_cache rows p..p+n-1, the caches as f16 pairs in u32 words (kv f16x2); one invocation per (token, two adjacent rotation pairs i, i+1), so every cache store is a whole word; no barriers" ~ rope.extra) }}
{% else %}
{{ c.header("rotary embedding at positions p..p+n-1: q rotated in place, rope(k) -> k_cache and v -> v_cache rows p..p+n-1; one invocation per (token, rotation pair), no barriers" ~ rope.extra) }}
{% endif %}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;  // q heads
const KV_HEADS: u32 = {{ kv_heads }}u;  // k/v heads
const HD: u32 = {{ head_dim }}u;
const HALF: u32 = {{ half }}u;  // pairs (i, i + HALF) within each head
const QW: u32 = {{ qw }}u;  // q row width
const KVW: u32 = {{ kvw }}u;  // k, v and cache row width
const QPAIRS: u32 = {{ qpairs }}u;  // invocations 0..QPAIRS-1 of a token rotate q, the next KVPAIRS k (+ copy v)
const KVPAIRS: u32 = {{ kvpairs }}u;
{{ rope.consts("pass through", "m", kv == "f16x2") }}
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}
{% if kv == "f16x2" %}
const QUARTER: u32 = {{ slots // 2 }}u;  // invocations per head: pairs (i, i + HALF) and (i + 1, i + 1 + HALF), i even

{{ kvs.store2_fn("store_k", "k_cache", kv) }}

{{ kvs.store2_fn("store_v", "v_cache", kv) }}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // q: head * QUARTER + i / 2; k: QPAIRS + kv_head * QUARTER + i / 2
  let t = gid.y;
  if (j >= QPAIRS + KVPAIRS || t >= step.n) {
    return;
  }
  let is_q = j < QPAIRS;
  let jj = select(j - QPAIRS, j, is_q);
  let head = jj / QUARTER;
  let i = 2u * (jj % QUARTER);
  let pos = step.p + t;
{% if partial %}
  if (i >= HALF) {  // features ROT + 2 (i - HALF) .. + 3 pass through: q keeps them, k and v go to the caches
    if (!is_q) {
      let src = t * KVW + head * HD + ROT + 2u * (i - HALF);
      let w = ({{ kvs.row("pos") }} * KVW + head * HD + ROT + 2u * (i - HALF)) / 2u;  // two whole words
      store_k(w, vec2<f32>(f32(k[src]), f32(k[src + 1u])));
      store_k(w + 1u, vec2<f32>(f32(k[src + 2u]), f32(k[src + 3u])));
      store_v(w, vec2<f32>(f32(v[src]), f32(v[src + 1u])));
      store_v(w + 1u, vec2<f32>(f32(v[src + 2u]), f32(v[src + 3u])));
    }
    return;
  }
{% endif %}
{% if long %}
  let tbl = select(0u, HALF, step._pad0 > LONG_AFTER);  // _pad0: the forward call's end position
{% endif %}
  let ang = f32(pos) * vec2<f32>(inv_freq[{{ tbl }}i], inv_freq[{{ tbl }}i + 1u]);
{{ rope.cos_sin("m") }}
  if (is_q) {
    let src = t * QW + head * HD + i;
    let x1 = vec2<f32>(f32(q[src]), f32(q[src + 1u]));
    let x2 = vec2<f32>(f32(q[src + HALF]), f32(q[src + HALF + 1u]));
    let r1 = x1 * cs - x2 * sn;
    let r2 = x2 * cs + x1 * sn;
    q[src] = A(r1.x);
    q[src + 1u] = A(r1.y);
    q[src + HALF] = A(r2.x);
    q[src + HALF + 1u] = A(r2.y);
  } else {
    let src = t * KVW + head * HD + i;
    let dst = ({{ kvs.row("pos") }} * KVW + head * HD + i) / 2u;  // u32 word of elements i, i + 1
    let x1 = vec2<f32>(f32(k[src]), f32(k[src + 1u]));
    let x2 = vec2<f32>(f32(k[src + HALF]), f32(k[src + HALF + 1u]));
    store_k(dst, x1 * cs - x2 * sn);
    store_k(dst + HALF / 2u, x2 * cs + x1 * sn);
    store_v(dst, vec2<f32>(f32(v[src]), f32(v[src + 1u])));
    store_v(dst + HALF / 2u, vec2<f32>(f32(v[src + HALF]), f32(v[src + HALF + 1u])));
  }
}
{% else %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // q: head * HALF + i; k: QPAIRS + kv_head * HALF + i
  let t = gid.y;
  if (j >= QPAIRS + KVPAIRS || t >= step.n) {
    return;
  }
  let is_q = j < QPAIRS;
  let jj = select(j - QPAIRS, j, is_q);
  let head = jj / {{ "SLOTS" if partial else "HALF" }};
  let i = jj % {{ "SLOTS" if partial else "HALF" }};
  let pos = step.p + t;
{% if partial %}
  if (i >= HALF) {  // features ROT + 2 (i - HALF) and the next one pass through: q keeps them
    if (!is_q) {
      let src = t * KVW + head * HD + ROT + 2u * (i - HALF);
      let dst = {{ kvs.row("pos") }} * KVW + head * HD + ROT + 2u * (i - HALF);
      k_cache[dst] = k[src];
      k_cache[dst + 1u] = k[src + 1u];
      v_cache[dst] = v[src];
      v_cache[dst + 1u] = v[src + 1u];
    }
    return;
  }
{% endif %}
{% if long %}
  let tbl = select(0u, HALF, step._pad0 > LONG_AFTER);  // _pad0: the forward call's end position
{% endif %}
  let ang = f32(pos) * inv_freq[{{ tbl }}i];
{{ rope.cos_sin("m") }}
  if (is_q) {
    let src = t * QW + head * HD + i;
    let x1 = f32(q[src]);
    let x2 = f32(q[src + HALF]);
    q[src] = A(x1 * cs - x2 * sn);
    q[src + HALF] = A(x2 * cs + x1 * sn);
  } else {
    let src = t * KVW + head * HD + i;
    let dst = {{ kvs.row("pos") }} * KVW + head * HD + i;
    let x1 = f32(k[src]);
    let x2 = f32(k[src + HALF]);
    k_cache[dst] = A(x1 * cs - x2 * sn);
    k_cache[dst + HALF] = A(x2 * cs + x1 * sn);
    v_cache[dst] = v[src];
    v_cache[dst + HALF] = v[src + HALF];
  }
}
{% endif %}
