{% import "_common.wgsl" as c with context %}
{{ c.elementwise_head("out = a + b") }}
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

{% call c.column_main("PER_ROW") %}
  let i = t * PER_ROW + col;
  out[i] = {{ T }}({{ F }}(a[i]) + {{ F }}(b[i]));
{% endcall %}
