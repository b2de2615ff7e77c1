{% import "_common.wgsl" as c with context %}
{{ c.header("out = x / sqrt(mean(x^2 over each group) + eps) * w; one invocation per (token, group), no barriers") }}
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
  for (var i = 0u; i < GROUP; i = i + 1u) {
    out[base + i] = A(f32(x[base + i]) * inv * w[i]);
  }
}
