{% import "_common.wgsl" as c with context %}
{{ c.header("out = x / sqrt(mean(x^2 over each group) + eps) * w" ~ (", written packed (outq/outs)" if pack else "") ~ "; one invocation per (token, group), no barriers") }}
{{ c.prelude() }}

const GROUP: u32 = {{ group }}u;  // features normalized together
const UNITS: u32 = {{ units }}u;  // groups per row
const EPS: f32 = {{ eps_lit }};

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let u = gid.x;
  if (u >= step.n * UNITS) {
    return;
  }
  let base = u * GROUP;
  var ss = 0.0;
  for (var i = 0u; i < GROUP; i = i + 1u) {
    let v = f32(x[base + i]);
    ss = ss + v * v;
  }
  let inv = 1.0 / sqrt(ss / f32(GROUP) + EPS);
{% if pack %}
  for (var c = 0u; c < GROUP / 8u; c = c + 1u) {  // 8 columns per packed entry (GROUP = the whole row)
    let b = base + 8u * c;
    let lo = vec4<f32>(f32(x[b]) * w[8u * c], f32(x[b + 1u]) * w[8u * c + 1u],
                       f32(x[b + 2u]) * w[8u * c + 2u], f32(x[b + 3u]) * w[8u * c + 3u]);
    let hi = vec4<f32>(f32(x[b + 4u]) * w[8u * c + 4u], f32(x[b + 5u]) * w[8u * c + 5u],
                       f32(x[b + 6u]) * w[8u * c + 6u], f32(x[b + 7u]) * w[8u * c + 7u]);
    pack8(u * (GROUP / 8u) + c, lo * inv, hi * inv);
  }
{% else %}
  for (var i = 0u; i < GROUP; i = i + 1u) {
    out[base + i] = A(f32(x[base + i]) * inv * w[i]);
  }
{% endif %}
}
{% if pack %}

{{ c.pack8_fn(pack_layout) }}
{% endif %}
