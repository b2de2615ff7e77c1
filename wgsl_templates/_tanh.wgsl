{#- fn tanh_c(u): tanh in f32 as 1 - 2 / (exp(2u) + 1), u clamped to +-15 so exp stays finite (tanh(15)
    == 1 in f32; some drivers' tanh builtin overflows for large |u|). `F` is f32 or vec4<f32>. -#}
{% macro tanh_fn(F) -%}
fn tanh_c(u: {{ F }}) -> {{ F }} {
  let c = clamp(u, {{ F }}(-15.0), {{ F }}(15.0));
  return 1.0 - 2.0 / (exp(2.0 * c) + 1.0);
}
{%- endmacro %}
