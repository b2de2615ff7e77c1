{#- Shared macros: every template opens with header(), then prelude() (elementwise_head() does both for the (n, cols) elementwise templates). -#}
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

{#- The opening of an elementwise template over an (n, cols) activation (_plan_elementwise: vec,
    per_row): header() with the invocation unit appended, prelude(), PER_ROW. -#}
{% macro elementwise_head(title) -%}
{{ header(title ~ "; one invocation per " ~ ("vec4" if vec == 4 else "element")) }}
{{ prelude() }}

const PER_ROW: u32 = {{ per_row }}u;  // {{ "vec4s" if vec == 4 else "elements" }} per row
{%- endmacro %}

{#- main() of a kernel with one invocation per (column `col` < limit, token `t`): x is the column
    (a vec4 or an element), y the token; the caller's body follows the bounds check. -#}
{% macro column_main(limit) -%}
@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let t = gid.y;
  if (col >= {{ limit }} || t >= step.n) {
    return;
  }
{{ caller() -}}
}
{% endmacro %}

{#- main() of a kernel with one invocation per token row t of COLS columns, no barriers; the
    caller's body follows `base`, the row's first index. -#}
{% macro row_main() -%}
@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  if (t >= step.n) {
    return;
  }
  let base = t * COLS;
{{ caller() -}}
}
{% endmacro %}

{#- f16 element i of a u32 word array `arr` (little-endian halves). -#}
{% macro half_fn(fname, arr) -%}
fn {{ fname }}(i: u32) -> f32 {
  let v = unpack2x16float({{ arr }}[i >> 1u]);
  return select(v.x, v.y, (i & 1u) == 1u);
}
{%- endmacro %}

{#- fn pack8(o, lo, hi): 8 consecutive values of one token (lo: the first 4) written as entry o of the
    packed activation "outq"/"outs" in `layout` (MatmulKey PACKED ACTIVATIONS): (sx, sum q) and the q
    as pairs q[j+4] + q[j] * 2^16 (|q| <= 255) or as int8 bytes (|q| <= 127). -#}
{% macro pack8_fn(layout) -%}
{% set qmax = "255.0" if layout == "pairs" else "127.0" %}
// Pack 8 consecutive values as a consumer's x, layout "{{ layout }}": (sx, sum q) and the q
// {{ "pairs q[j+4] + q[j] * 2^16, |q| <= 255" if layout == "pairs" else "as int8, |q| <= 127" }}.
fn pack8(o: u32, lo: vec4<f32>, hi: vec4<f32>) {
  let m = max(abs(lo), abs(hi));
  let mx = max(max(m.x, m.y), max(m.z, m.w));
  // a NaN or infinite value (all exponent bits set) makes sx NaN, so the consumer's result is
  // NaN too, as on the float path, instead of a silently rounded chunk
  let e = vec4<u32>(0x7F800000u);
  let finite = all((bitcast<vec4<u32>>(lo) & e) != e) && all((bitcast<vec4<u32>>(hi) & e) != e);
  let inv = select(0.0, {{ qmax }} / mx, mx > 0.0 && finite);
  let q0 = vec4<i32>(round(lo * inv));
  let q1 = vec4<i32>(round(hi * inv));
{% if layout == "pairs" %}
  outq[o] = bitcast<vec4<u32>>(q1 + q0 * 65536i);
{% else %}
  outq[o] = vec2<u32>(pack4xI8(q0), pack4xI8(q1));
{% endif %}
  let t = q0 + q1;
  let nan = bitcast<f32>(e.x | 0x00400000u);  // a quiet NaN, built at run time (WGSL has no NaN constants)
  outs[o] = vec2<f32>(select(nan, mx / {{ qmax }}, finite), f32(t.x + t.y + t.z + t.w));
}
{%- endmacro %}
