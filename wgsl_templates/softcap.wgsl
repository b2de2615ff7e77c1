{% import "_common.wgsl" as c with context %}
{% import "_tanh.wgsl" as th %}
{{ c.header("out = tanh(x / CAP) * CAP (logit soft-capping); one invocation per " ~ ("vec4" if vec == 4 else "element")) }}
{{ c.prelude() }}

const PER_ROW: u32 = {{ per_row }}u;  // {{ "vec4s" if vec == 4 else "elements" }} per row
const CAP: f32 = {{ cap_lit }};
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

{{ th.tanh_fn(F) }}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let t = gid.y;
  if (col >= PER_ROW || t >= step.n) {
    return;
  }
  let i = t * PER_ROW + col;
  out[i] = {{ T }}(tanh_c({{ F }}(x[i]) / CAP) * CAP);
}
