{% import "_common.wgsl" as c with context %}
{% import "_tanh.wgsl" as th %}
{{ c.elementwise_head("out = gelu_tanh(gate) * up (GeGLU), gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))") }}
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

{{ th.tanh_fn(F) }}

{% call c.column_main("PER_ROW") %}
  let i = t * PER_ROW + col;
  let g = {{ F }}(gate[i]);
  let gelu = 0.5 * g * (1.0 + tanh_c(0.7978845608028654 * (g + 0.044715 * g * g * g)));
  out[i] = {{ T }}(gelu * {{ F }}(up[i]));
{% endcall %}
