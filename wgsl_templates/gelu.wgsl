{% import "_common.wgsl" as c with context %}
{{ c.elementwise_head("out = gelu(x), " ~ ("tanh form" if approximate == "tanh" else "erf form (Abramowitz-Stegun 7.1.26, |erf error| <= 1.5e-7)")) }}
{% set F = "vec4<f32>" if vec == 4 else "f32" %}
{% set T = "A4" if vec == 4 else "A" %}

fn gelu(x: {{ F }}) -> {{ F }} {
{% if approximate == "tanh" %}
  // tanh(u) = 1 - 2 / (exp(2u) + 1); u clamped so exp stays finite (tanh(15) == 1 in f32)
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), {{ F }}(-15.0), {{ F }}(15.0));
  return 0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0));
{% else %}
  // WGSL has no erf: erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0
  let z = abs(x) * 0.7071067811865476;
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  let e = sign(x) * (1.0 - poly * exp(-z * z));
  return 0.5 * x * (1.0 + e);
{% endif %}
}

{% call c.column_main("PER_ROW") %}
  let i = t * PER_ROW + col;
  out[i] = {{ T }}(gelu({{ F }}(x[i])));
{% endcall %}
