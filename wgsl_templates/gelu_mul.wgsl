{% import "_common.wgsl" as c with context %}
{% import "_tanh.wgsl" as th %}
{{ c.header("out = gelu_tanh(gate) * up (GeGLU), gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); one invocation per " ~ ("vec4" if vec == 4 else "element")) }}
{{ c.prelude() }}

const PER_ROW: u32 = {{ per_row }}u;  // {{ "vec4s" if vec == 4 else "elements" }} per row
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
  let g = {{ F }}(gate[i]);
  let gelu = 0.5 * g * (1.0 + tanh_c(0.7978845608028654 * (g + 0.044715 * g * g * g)));
  out[i] = {{ T }}(gelu * {{ F }}(up[i]));
}
