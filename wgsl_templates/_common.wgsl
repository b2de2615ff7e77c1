{#- Shared macros: every template opens with header(), then prelude(). -#}
{% macro header(title) -%}
// {{ name }}
// {{ title }}
// key: {{ key.to_json() | tojson }}
// workgroup_size: {{ workgroup_size | join(", ") }}; dispatch (x, y, z): {{ dispatch | join(" ; ") }}
{% for d in decls %}
// @binding({{ loop.index0 }}) {{ d[0] }} ({{ d[1] }}): {{ d[3] }}
{% endfor %}
{%- endmacro %}

{% macro prelude() -%}
{% if act == "f16" %}
enable f16;
{% endif %}
alias A = {{ act }};
alias A4 = vec4<{{ act }}>;

struct Step {
  n: u32,
  p: u32,
  _pad0: u32,
  _pad1: u32,
}

{% for d in decls %}
{% if d[1] == "uniform" %}
@group(0) @binding({{ loop.index0 }}) var<uniform> {{ d[0] }}: {{ d[2] }};
{% else %}
@group(0) @binding({{ loop.index0 }}) var<storage, {{ d[1] }}> {{ d[0] }}: {{ d[2] }};
{% endif %}
{% endfor %}
{%- endmacro %}

{#- f16 element i of a u32 word array `arr` (little-endian halves). -#}
{% macro half_fn(fname, arr) -%}
fn {{ fname }}(i: u32) -> f32 {
  let v = unpack2x16float({{ arr }}[i >> 1u]);
  return select(v.x, v.y, (i & 1u) == 1u);
}
{%- endmacro %}
