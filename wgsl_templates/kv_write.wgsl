{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% if kv == "f16x2" %}
{{ c.header("cache[p + i, :] = x[i, :] for i < n; the cache holds f16 pairs in u32 words (kv f16x2): one invocation per word, so no two write halves of one word") }}
{% else %}
{{ c.header("cache[p + i, :] = x[i, :] for i < n; one invocation per element") }}
{% endif %}
{{ c.prelude() }}

const WIDTH: u32 = {{ width }}u;
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}
{% if kv == "f16x2" %}
const WORDS: u32 = {{ width // 2 }}u;  // u32 words per cache row

{{ kvs.store2_fn("store_cache", "cache", kv) }}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x;  // word: columns 2w, 2w + 1
  let t = gid.y;
  if (w >= WORDS || t >= step.n) {
    return;
  }
  let src = t * WIDTH + 2u * w;
  store_cache({{ kvs.row("step.p + t") }} * WORDS + w, vec2<f32>(f32(x[src]), f32(x[src + 1u])));
}
{% else %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let t = gid.y;
  if (col >= WIDTH || t >= step.n) {
    return;
  }
  cache[{{ kvs.row("step.p + t") }} * WIDTH + col] = x[t * WIDTH + col];
}
{% endif %}
