{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% set f16x2 = kv is defined and kv == "f16x2" %}
{{ c.header("rotate_half rotary embedding at positions " ~ ("index in row" if packed is defined and packed else "p..p+n-1") ~ ("; rotated rows go to cache rows p..p+n-1" if to_cache else "") ~ ("; the cache holds f16 pairs in u32 words (kv f16x2): one invocation per (token, head, two adjacent pairs i, i+1), so it writes whole words" if f16x2 else "; one invocation per (token, head, pair)")) }}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;
const HD: u32 = {{ head_dim }}u;
const HALF: u32 = {{ half }}u;  // pairs (i, i + HALF) within each head
const WIDTH: u32 = {{ width }}u;

// cos/sin of a large angle: reduce by 2*pi in two parts (Cody-Waite) first, so
// that drivers whose sin/cos are only accurate on [-pi, pi] still match the
// reference at long positions. 6.28125 has 8 significant bits: k * C1 is exact.
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;
{% if f16x2 %}
const QUARTER: u32 = {{ half // 2 }}u;  // invocations per head: pairs (i, i + HALF) and (i + 1, i + 1 + HALF), i even

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
  let ang = f32(step.p + t) * vec2<f32>(inv_freq[i], inv_freq[i + 1u]);
  let k = round(ang * INV_TWO_PI);
  let red = (ang - k * TWO_PI_HI) - k * TWO_PI_LO;
  let cs = cos(red);
  let sn = sin(red);
  let src = t * WIDTH + head * HD + i;
  let x1 = vec2<f32>(f32(x[src]), f32(x[src + 1u]));
  let x2 = vec2<f32>(f32(x[src + HALF]), f32(x[src + HALF + 1u]));
  let dst = ((step.p + t) * WIDTH + head * HD + i) / 2u;  // u32 word of elements i, i + 1
  store_cache(dst, x1 * cs - x2 * sn);
  store_cache(dst + HALF / 2u, x2 * cs + x1 * sn);
}
{% else %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // head * HALF + i
  let t = gid.y;
  if (j >= HEADS * HALF || t >= step.n) {
    return;
  }
  let head = j / HALF;
  let i = j % HALF;
{% if packed is defined and packed %}
  let ang = f32(t - u32(offsets[u32(rows[t])])) * inv_freq[i];  // a packed batch: the index within the row
{% else %}
  let ang = f32(step.p + t) * inv_freq[i];
{% endif %}
  let k = round(ang * INV_TWO_PI);
  let red = (ang - k * TWO_PI_HI) - k * TWO_PI_LO;
  let cs = cos(red);
  let sn = sin(red);
  let src = t * WIDTH + head * HD + i;
  let x1 = f32(x[src]);
  let x2 = f32(x[src + HALF]);
{% if to_cache %}
  let dst = (step.p + t) * WIDTH + head * HD + i;
  cache[dst] = A(x1 * cs - x2 * sn);
  cache[dst + HALF] = A(x2 * cs + x1 * sn);
{% else %}
  out[src] = A(x1 * cs - x2 * sn);
  out[src + HALF] = A(x2 * cs + x1 * sn);
{% endif %}
}
{% endif %}
