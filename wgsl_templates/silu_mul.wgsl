{% import "_common.wgsl" as c with context %}
{{ c.elementwise_head("out = silu(gate) * up = gate / (1 + exp(-gate)) * up") }}
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

{% call c.column_main("PER_ROW") %}
  let i = t * PER_ROW + col;
  let g = {{ F }}(gate[i]);
  out[i] = {{ T }}(g / (1.0 + exp(-g)) * {{ F }}(up[i]));
{% endcall %}
