{% import "_common.wgsl" as c with context %}
{% import "_tanh.wgsl" as th %}
{{ c.elementwise_head("out = tanh(x / CAP) * CAP (logit soft-capping)") }}
const CAP: f32 = {{ cap_lit }};
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

{{ th.tanh_fn(F) }}

{% call c.column_main("PER_ROW") %}
  let i = t * PER_ROW + col;
  out[i] = {{ T }}(tanh_c({{ F }}(x[i]) / CAP) * CAP);
{% endcall %}
