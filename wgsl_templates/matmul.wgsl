{% import "_common.wgsl" as c with context %}
{{ c.header("out = x @ dequant(w).T" ~ (" + bias" if bias else "") ~ "; one invocation per " ~ rpi ~ " output row(s) x " ~ tn ~ " token(s), no barriers") }}
{{ c.prelude() }}

const ROWS: u32 = {{ rows }}u;  // out_features
const COLS: u32 = {{ cols }}u;  // in_features
const G: u32 = {{ groups }}u;   // 32-column groups per weight row
const FULL: u32 = {{ full }}u;  // groups entirely inside COLS
const ROW_OFFSET: u32 = {{ row_offset }}u;  // this weight slice's first row within the full output
const OUT_ROWS: u32 = {{ out_rows or rows }}u;  // row stride of out (the full weight's rows)

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
{% elif fmt == "q4a" %}
// (scale, lo) of group i: w = scale * q + lo
fn scale_lo_at(i: u32) -> vec2<f32> {
  return unpack2x16float(scales[i]);
}
{% elif path == "scalar" %}
{% if fmt == "f16" %}
{{ c.half_fn("w_at", "w") }}
{% else %}
fn w_at(i: u32) -> f32 {
  return w[i];
}
{% endif %}
{% endif %}

{#- Per 4-column chunk i of a weight block, row slot j: weight vector w{j}_{i}.
    The x chunk of token slot t is loaded once (x{t}_{i}) and reused for every row slot. -#}
{% macro accumulate(nvec, col0, masked) %}
{% for t in range(tn) %}
{% for i in range(nvec) %}
    let x{{ t }}_{{ i }} = {% if masked %}ldxm(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u, {{ col0 }} + {{ 4 * i }}u){% else %}ldx(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u){% endif %};
{% endfor %}
{% if fmt == "q4a" and path == "quant" %}
    // q4a: sum_c (s*q_c + lo) * x_c = s * dot(q, x) + lo * sum(x)
    let xs{{ t }} = dot({% for i in range(nvec) %}{{ " + " if i }}x{{ t }}_{{ i }}{% endfor %}, vec4<f32>(1.0));
{% endif %}
{% for j in range(rpi) %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + {{ "s%d * (" % j if path == "quant" }}
{%- for i in range(nvec) -%}
{{ " + " if i }}dot(w{{ j }}_{{ i }}, x{{ t }}_{{ i }})
{%- endfor %}{{ ")" if path == "quant" }}{{ " + lo%d * xs%d" % (j, t) if fmt == "q4a" and path == "quant" }};
{% endfor %}
{% endfor %}
{% endmacro %}

{% macro quant_group(masked) %}
    let c0 = g * 32u;
{% for j in range(rpi) %}
{% if fmt == "q4a" %}
    let sl{{ j }} = scale_lo_at(wr{{ j }} * G + g);
    let s{{ j }} = sl{{ j }}.x;
    let lo{{ j }} = sl{{ j }}.y;
{% else %}
    let s{{ j }} = scale_at(wr{{ j }} * G + g);
{% endif %}
{% if fmt in ("q4", "q4a") %}
    let wv{{ j }} = w[wr{{ j }} * G + g];  // 4 words = 32 nibbles
{% for k in range(4) %}
    let w{{ j }}_{{ 2 * k }} = vec4<f32>((vec4<u32>(wv{{ j }}[{{ k }}]) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)){{ " - 8.0" if fmt == "q4" }};
    let w{{ j }}_{{ 2 * k + 1 }} = vec4<f32>((vec4<u32>(wv{{ j }}[{{ k }}]) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)){{ " - 8.0" if fmt == "q4" }};
{% endfor %}
{% else %}
    let wa{{ j }} = w[(wr{{ j }} * G + g) * 2u];  // 8 words = 32 int8
    let wb{{ j }} = w[(wr{{ j }} * G + g) * 2u + 1u];
{% for k in range(8) %}
    let w{{ j }}_{{ k }} = vec4<f32>((vec4<i32>(bitcast<i32>({{ "wa" if k < 4 else "wb" }}{{ j }}[{{ k % 4 }}])) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
{% endfor %}
{% endif %}
{% endfor %}
{{ accumulate(8, "c0", masked) }}
{%- endmacro %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let r0 = gid.x * {{ rpi }}u;  // first of this invocation's {{ rpi }} output row(s)
  let n = step.n;
{% if last_row %}
  let t0 = n - 1u;  // only the last token's row
{% else %}
  let t0 = wid.y * {{ tn }}u;
{% endif %}
  if (r0 >= ROWS || t0 >= n) {
    return;
  }
{% for j in range(rpi) %}
  let wr{{ j }} = min(r0 + {{ j }}u, ROWS - 1u);  // weight row of row slot {{ j }} (clamped, store skipped)
{% endfor %}
{% for t in range(tn) %}
  let xr{{ t }} = min(t0 + {{ t }}u, n - 1u) * COLS;  // x row of token slot {{ t }} (clamped, store skipped)
{% for j in range(rpi) %}
  var acc{{ j }}_{{ t }} = 0.0;
{% endfor %}
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
    let c0 = k * 8u;
{% for j in range(rpi) %}
    let wv{{ j }} = w[wr{{ j }} * (COLS / 8u) + k];  // 8 halves
    let w{{ j }}_0 = vec4<f32>(unpack2x16float(wv{{ j }}.x), unpack2x16float(wv{{ j }}.y));
    let w{{ j }}_1 = vec4<f32>(unpack2x16float(wv{{ j }}.z), unpack2x16float(wv{{ j }}.w));
{% endfor %}
{{ accumulate(2, "c0", False) }}
  }
{% elif path == "f32vec" %}
  for (var k = 0u; k < COLS / 4u; k = k + 1u) {
    let c0 = k * 4u;
{% for j in range(rpi) %}
    let w{{ j }}_0 = w[wr{{ j }} * (COLS / 4u) + k];
{% endfor %}
{{ accumulate(1, "c0", False) }}
  }
{% else %}
  // rows are not vector-aligned: scalar path
  for (var col = 0u; col < COLS; col = col + 1u) {
{% for t in range(tn) %}
    let x{{ t }} = xat(xr{{ t }} + col);
{% endfor %}
{% for j in range(rpi) %}
    let wc{{ j }} = w_at(wr{{ j }} * COLS + col);
{% for t in range(tn) %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + wc{{ j }} * x{{ t }};
{% endfor %}
{% endfor %}
  }
{% endif %}
{% for j in range(rpi) %}
{% for t in range(tn) %}
{% if last_row %}
  if (r0 + {{ j }}u < ROWS) {
    out[ROW_OFFSET + r0 + {{ j }}u] = A(acc{{ j }}_{{ t }}{{ " + bias[ROW_OFFSET + r0 + %du]" % j if bias }});
  }
{% else %}
  if (r0 + {{ j }}u < ROWS && t0 + {{ t }}u < n) {
    out[(t0 + {{ t }}u) * OUT_ROWS + ROW_OFFSET + r0 + {{ j }}u] = A(acc{{ j }}_{{ t }}{{ " + bias[ROW_OFFSET + r0 + %du]" % j if bias }});
  }
{% endif %}
{% endfor %}
{% endfor %}
}
