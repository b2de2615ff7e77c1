{% import "_common.wgsl" as c with context %}
{{ c.header("out = x @ dequant(w).T" ~ (" + bias" if bias else "") ~ "; one invocation per output row and " ~ tn ~ " token(s), no barriers") }}
{{ c.prelude() }}

const ROWS: u32 = {{ rows }}u;  // out_features
const COLS: u32 = {{ cols }}u;  // in_features
const G: u32 = {{ groups }}u;   // 32-column groups per weight row
const FULL: u32 = {{ full }}u;  // groups entirely inside COLS

{% if xvec %}
// x row starts are 16-byte aligned (COLS % 4 == 0): vec4 loads.
fn xat(i: u32) -> f32 {
  return f32(x[i >> 2u][i & 3u]);
}
fn ldx(b: u32) -> vec4<f32> {
  return vec4<f32>(x[b >> 2u]);
}
fn ldxm(b: u32, col: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(x[b >> 2u]), col < COLS);
}
{% else %}
fn xat(i: u32) -> f32 {
  return f32(x[i]);
}
fn ldx(b: u32) -> vec4<f32> {
  return vec4<f32>(f32(x[b]), f32(x[b + 1u]), f32(x[b + 2u]), f32(x[b + 3u]));
}
// columns >= COLS read as 0 (the padding of the last group may face NaN garbage)
fn ldxm(b: u32, col: u32) -> vec4<f32> {
  return vec4<f32>(select(0.0, f32(x[b]), col < COLS), select(0.0, f32(x[b + 1u]), col + 1u < COLS),
                   select(0.0, f32(x[b + 2u]), col + 2u < COLS), select(0.0, f32(x[b + 3u]), col + 3u < COLS));
}
{% endif %}

{% if fmt in ("q4", "q8") %}
{{ c.half_fn("scale_at", "scales") }}
{% elif path == "scalar" %}
{% if fmt == "f16" %}
{{ c.half_fn("w_at", "w") }}
{% else %}
fn w_at(i: u32) -> f32 {
  return w[i];
}
{% endif %}
{% endif %}

{% macro accumulate(nvec, col0, masked) %}
{% for t in range(tn) %}
    acc{{ t }} = acc{{ t }} + {{ "s * (" if path == "quant" }}
{%- for i in range(nvec) -%}
{{ " + " if i }}dot(w{{ i }}, {% if masked %}ldxm(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u, {{ col0 }} + {{ 4 * i }}u){% else %}ldx(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u){% endif %})
{%- endfor %}{{ ")" if path == "quant" }};
{% endfor %}
{% endmacro %}

{% macro quant_group(masked) %}
    let s = scale_at(r * G + g);
    let c0 = g * 32u;
{% if fmt == "q4" %}
    let wv = w[r * G + g];  // 4 words = 32 nibbles
{% for j in range(4) %}
    let w{{ 2 * j }} = vec4<f32>((vec4<u32>(wv[{{ j }}]) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - 8.0;
    let w{{ 2 * j + 1 }} = vec4<f32>((vec4<u32>(wv[{{ j }}]) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)) - 8.0;
{% endfor %}
{% else %}
    let wv0 = w[(r * G + g) * 2u];  // 8 words = 32 int8
    let wv1 = w[(r * G + g) * 2u + 1u];
{% for j in range(8) %}
    let w{{ j }} = vec4<f32>((vec4<i32>(bitcast<i32>(wv{{ j // 4 }}[{{ j % 4 }}])) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
{% endfor %}
{% endif %}
{{ accumulate(8, "c0", masked) }}
{%- endmacro %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  let n = step.n;
{% if last_row %}
  let t0 = n - 1u;  // only the last token's row
{% else %}
  let t0 = gid.y * {{ tn }}u;
{% endif %}
  if (r >= ROWS || t0 >= n) {
    return;
  }
{% for t in range(tn) %}
  let xr{{ t }} = min(t0 + {{ t }}u, n - 1u) * COLS;  // x row of token slot {{ t }} (clamped, store skipped)
  var acc{{ t }} = 0.0;
{% endfor %}
{% if path == "quant" %}
  for (var g = 0u; g < FULL; g = g + 1u) {
{{ quant_group(False) }}
  }
{% if tail %}
  {
    let g = FULL;  // last group: columns past COLS are padding (q = 0), x there reads as 0
{{ quant_group(True) }}
  }
{% endif %}
{% elif path == "f16vec" %}
  for (var k = 0u; k < COLS / 8u; k = k + 1u) {
    let wv = w[r * (COLS / 8u) + k];  // 8 halves
    let w0 = vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y));
    let w1 = vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w));
    let c0 = k * 8u;
{{ accumulate(2, "c0", False) }}
  }
{% elif path == "f32vec" %}
  for (var k = 0u; k < COLS / 4u; k = k + 1u) {
    let w0 = w[r * (COLS / 4u) + k];
    let c0 = k * 4u;
{{ accumulate(1, "c0", False) }}
  }
{% else %}
  // rows are not vector-aligned: scalar path
  for (var col = 0u; col < COLS; col = col + 1u) {
    let wc = w_at(r * COLS + col);
{% for t in range(tn) %}
    acc{{ t }} = acc{{ t }} + wc * xat(xr{{ t }} + col);
{% endfor %}
  }
{% endif %}
{% for t in range(tn) %}
{% if last_row %}
  out[r] = A(acc{{ t }}{{ " + bias[r]" if bias }});
{% else %}
  if (t0 + {{ t }}u < n) {
    out[(t0 + {{ t }}u) * ROWS + r] = A(acc{{ t }}{{ " + bias[r]" if bias }});
  }
{% endif %}
{% endfor %}
}
