{% import "_common.wgsl" as c with context %}
{% import "_dequant.wgsl" as dq %}
{% set lo = (path == "quant" and dq.FORMATS[fmt].get("lo", False)) or path == "dq8" %}  {#- w = s q + lo (q4a, block formats): + lo * sum(x) per group #}
{% set scaled = path in ("quant", "dq8") %}  {#- w = s q: s * dot(q, x) per group / chunk #}
{% set lin = ("rms_norm(x) @ dequant(w).T" if norm else "x @ dequant(w).T") ~ (" + bias" if bias else "") %}
{% if epilogue == "silu_mul" %}
{% set lin = "silu(" ~ lin ~ " [gate rows]) * (" ~ lin ~ " [up rows])" %}
{% endif %}
{% set title = ("out += " if epilogue == "residual" else "out = ") ~ lin ~ ("; rows split over " ~ splits | length ~ " outputs" if splits else "") %}
{% if xq %}{% set title = title ~ "; x packed (integer dot products)" %}{% endif %}
{% if pack %}{% set title = title ~ "; output also packed" %}{% endif %}
{{ c.header(title ~ "; one invocation per " ~ rpi ~ " output row(s) x " ~ tn ~ " token(s), no barriers") }}
{{ c.prelude() }}

const ROWS: u32 = {{ rows }}u;  // out_features
const COLS: u32 = {{ cols }}u;  // in_features
const G: u32 = {{ groups }}u;   // 32-column groups per weight row
const FULL: u32 = {{ full }}u;  // groups entirely inside COLS
const ROW_OFFSET: u32 = {{ row_offset }}u;  // this weight slice's first row within the full output
const OUT_ROWS: u32 = {{ out_rows or rows }}u;  // row stride of out (the full weight's rows)
{% if norm %}
const NORM_EPS: f32 = {{ norm_eps_lit }};  // RMSNorm prologue: inv(t) = 1 / sqrt(mean(x^2) + eps)
{% endif %}
{% if epilogue == "silu_mul" %}
// silu_mul epilogue: weight rows 0..ROWS-1 are gate, ROWS..2*ROWS-1 up; row slot j + {{ rpi }} is up row j
{% endif %}

{% if x_layout == "pairs" %}
const M: u32 = 0x000F000Fu;  // nibbles j and j+4 of a word, after >> 4j, in two 16-bit fields
const WORDS: u32 = COLS / 8u;  // packed x entries (8 columns each) per token

// sum over one q4 weight word of n_i * q_i, against the word's packed x (4 lanes of q pairs):
// each u32 product leaves n_j q_j + n_{j+4} q_{j+4} in its high half; +0x8000 makes the
// arithmetic shift round the signed cross terms (|.| <= 15300) away exactly.
fn word_dot(w: u32, xv: vec4<u32>) -> i32 {
  let p = (w & M) * xv.x + ((w >> 4u) & M) * xv.y + ((w >> 8u) & M) * xv.z + ((w >> 12u) & M) * xv.w;
  return bitcast<i32>(p + 0x8000u) >> 16u;
}
{% if tn > 1 %}
const SHIFTS: vec4<u32> = vec4<u32>(0u, 4u, 8u, 12u);

// word_dot with the weight word's 4 nibble pairs already masked (m = (w >> SHIFTS) & M), for tn tokens.
// Decode (tn = 1) keeps word_dot: the vector mask + dot form measured ~15% slower there on
// SwiftShader (bench/kernel_bench.py, the *_idot shapes).
fn pair_dot(m: vec4<u32>, xv: vec4<u32>) -> i32 {
  return bitcast<i32>(dot(m, xv) + 0x8000u) >> 16u;
}
{% endif %}
{% elif x_layout == "bytes" %}
const WORDS: u32 = COLS / 16u;  // packed x entries (16 int8 columns each) per token
{% endif %}
{% if xq and not norm %}
{#- x is not bound (only xq / xs): no x loaders -#}
{% elif xvec %}
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
{% if norm and not xq %}
fn nat(i: u32) -> f32 {
  return norm_w[i >> 2u][i & 3u];
}
fn ldn(col: u32) -> vec4<f32> {
  return norm_w[col >> 2u];
}
fn ldnm(col: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), norm_w[col >> 2u], col < COLS);
}
{% endif %}
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
{% if norm and not xq %}
fn nat(i: u32) -> f32 {
  return norm_w[i];
}
fn ldn(col: u32) -> vec4<f32> {
  return vec4<f32>(norm_w[col], norm_w[col + 1u], norm_w[col + 2u], norm_w[col + 3u]);
}
fn ldnm(col: u32) -> vec4<f32> {
  return vec4<f32>(select(0.0, norm_w[col], col < COLS), select(0.0, norm_w[col + 1u], col + 1u < COLS),
                   select(0.0, norm_w[col + 2u], col + 2u < COLS), select(0.0, norm_w[col + 3u], col + 3u < COLS));
}
{% endif %}
{% endif %}

{% if path == "dq8" %}
{{ dq.fns(fmt, cols) }}
{% else %}
{{ dq.mm_fns(fmt, path) }}{# the format's scale / weight readers (_dequant.wgsl) #}
{% endif %}

{#- Per 4-column chunk i of a weight block, row slot j: weight vector w{j}_{i}.
    The x chunk of token slot t is loaded once (x{t}_{i}) and reused for every row slot. -#}
{% macro accumulate(nvec, col0, masked) %}
{% if norm %}
    // RMSNorm prologue: the norm weight chunk is loaded once for all tokens; each token's raw x
    // chunk feeds the sum of squares, then x * norm_w is what every row slot uses
{% for i in range(nvec) %}
    let nw_{{ i }} = {% if masked %}ldnm({{ col0 }} + {{ 4 * i }}u){% else %}ldn({{ col0 }} + {{ 4 * i }}u){% endif %};
{% endfor %}
{% endif %}
{% for t in range(tn) %}
{% for i in range(nvec) %}
    let {{ "xa" if norm else "x" }}{{ t }}_{{ i }} = {% if masked %}ldxm(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u, {{ col0 }} + {{ 4 * i }}u){% else %}ldx(xr{{ t }} + {{ col0 }} + {{ 4 * i }}u){% endif %};
{% endfor %}
{% if norm %}
    ss{{ t }} = ss{{ t }}{% for i in range(nvec) %} + xa{{ t }}_{{ i }} * xa{{ t }}_{{ i }}{% endfor %};
{% for i in range(nvec) %}
    let x{{ t }}_{{ i }} = xa{{ t }}_{{ i }} * nw_{{ i }};
{% endfor %}
{% endif %}
{% if lo %}
    // {{ "q4a" if path == "quant" else "a chunk of a block format" }}: sum_c (s*q_c + lo) * x_c = s * dot(q, x) + lo * sum(x)
    let xs{{ t }} = dot({% for i in range(nvec) %}{{ " + " if i }}x{{ t }}_{{ i }}{% endfor %}, vec4<f32>(1.0));
{% endif %}
{% for j in range(slots) %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + {{ "s%d * (" % j if scaled }}
{%- for i in range(nvec) -%}
{{ " + " if i }}dot(w{{ j }}_{{ i }}, x{{ t }}_{{ i }})
{%- endfor %}{{ ")" if scaled }}{{ " + lo%d * xs%d" % (j, t) if lo }};
{% endfor %}
{% endfor %}
{% endmacro %}

{% macro quant_group(masked) %}
    let c0 = g * 32u;
{% for j in range(slots) %}
{{ dq.mm_group(fmt, j) }}{# scale(s) and the 8 q vectors w{j}_i of group g (_dequant.wgsl) #}
{% endfor %}
{{ accumulate(8, "c0", masked) }}
{%- endmacro %}

{% if pack %}
{{ c.pack8_fn(pack_layout) }}
{% endif %}

{#- The value of row slot j, token slot t (gate/up pair halves for silu_mul). -#}
{% macro value(j, t, up=False) -%}
acc{{ j + (rpi if up else 0) }}_{{ t }}{{ " * inv%d" % t if norm }}{{ (" + bias[ROWS + r0 + %du]" if up else " + bias[ROW_OFFSET + r0 + %du]") % j if bias }}
{%- endmacro %}

{#- Stores of every (row slot, token slot) into `buf` at row stride `stride`; output row = rbase + j. -#}
{% macro stores(buf, stride, rbase) %}
{% if pack %}
  // rpi == 8 rows, all < ROWS (ROWS % 8 == 0); tn == 1
  if (t0 < n) {
{% for j in range(rpi) %}
{% if epilogue == "silu_mul" %}
    let g{{ j }} = {{ value(j, 0) }};
    let v{{ j }} = g{{ j }} / (1.0 + exp(-g{{ j }})) * ({{ value(j, 0, True) }});
{% else %}
    let o{{ j }} = t0 * {{ stride }} + {{ rbase }} + {{ j }}u;
    let h{{ j }} = A(f32({{ buf }}[o{{ j }}]) + {{ value(j, 0) }});
    {{ buf }}[o{{ j }}] = h{{ j }};
    let v{{ j }} = f32(h{{ j }}) * pack_w[r0 + {{ j }}u];
{% endif %}
{% endfor %}
    pack8(t0 * (ROWS / 8u) + r0 / 8u, vec4<f32>(v0, v1, v2, v3), vec4<f32>(v4, v5, v6, v7));
  }
{% else %}
{% for j in range(rpi) %}
{% for t in range(tn) %}
{% if last_row %}
  if (r0 + {{ j }}u < ROWS) {
{% set o = "%s + %du" % (rbase, j) %}
{% else %}
  if (r0 + {{ j }}u < ROWS && t0 + {{ t }}u < n) {
{% set o = "(t0 + %du) * %s + %s + %du" % (t, stride, rbase, j) %}
{% endif %}
{% if epilogue == "silu_mul" %}
    let g = {{ value(j, t) }};
    let u = {{ value(j, t, True) }};
    {{ buf }}[{{ o }}] = A(g / (1.0 + exp(-g)) * u);
{% elif epilogue == "residual" %}
    {{ buf }}[{{ o }}] = A(f32({{ buf }}[{{ o }}]) + {{ value(j, t) }});
{% else %}
    {{ buf }}[{{ o }}] = A({{ value(j, t) }});
{% endif %}
  }
{% endfor %}
{% endfor %}
{% endif %}
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
{% for j in range(rpi, slots) %}
  let wr{{ j }} = wr{{ j - rpi }} + ROWS;  // up row of row slot {{ j - rpi }}
{% endfor %}
{% for t in range(tn) %}
  let xr{{ t }} = min(t0 + {{ t }}u, n - 1u) * COLS;  // x row of token slot {{ t }} (clamped, store skipped)
{% for j in range(slots) %}
  var acc{{ j }}_{{ t }} = 0.0;
{% endfor %}
{% if norm %}
  var ss{{ t }} = {{ "0.0" if path == "scalar" else "vec4<f32>(0.0)" }};  // sum of x^2 of token slot {{ t }}
{% endif %}
{% endfor %}
{% if path == "idot" %}
{% if norm %}
{% for t in range(tn) %}
  for (var c = 0u; c < COLS / 4u; c = c + 1u) {  // RMSNorm: sum of squares of the raw x
    let xa = ldx(xr{{ t }} + 4u * c);
    ss{{ t }} = ss{{ t }} + xa * xa;
  }
{% endfor %}
{% endif %}
{% if x_layout == "pairs" %}
{% for t in range(tn) %}
  let xw{{ t }} = min(t0 + {{ t }}u, n - 1u) * WORDS;  // token slot {{ t }}'s packed x (clamped, store skipped)
{% endfor %}
  for (var g = 0u; g < G; g = g + 1u) {
{% for t in range(tn) %}
    let xb{{ t }} = xw{{ t }} + g * 4u;
    let xv{{ t }}_0 = xq[xb{{ t }}];
    let xv{{ t }}_1 = xq[xb{{ t }} + 1u];
    let xv{{ t }}_2 = xq[xb{{ t }} + 2u];
    let xv{{ t }}_3 = xq[xb{{ t }} + 3u];
    let e{{ t }}_0 = xs[xb{{ t }}];
    let e{{ t }}_1 = xs[xb{{ t }} + 1u];
    let e{{ t }}_2 = xs[xb{{ t }} + 2u];
    let e{{ t }}_3 = xs[xb{{ t }} + 3u];
    let sx{{ t }} = vec4<f32>(e{{ t }}_0.x, e{{ t }}_1.x, e{{ t }}_2.x, e{{ t }}_3.x);  // the 4 words' activation scales
    let xsum{{ t }} = dot(sx{{ t }}, vec4<f32>(e{{ t }}_0.y, e{{ t }}_1.y, e{{ t }}_2.y, e{{ t }}_3.y));  // sum of the group's x
{% endfor %}
{% for j in range(slots) %}
    let wv{{ j }} = w[wr{{ j }} * G + g];
{% if fmt == "q4a" %}
    let sl{{ j }} = scale_lo_at(wr{{ j }} * G + g);
{% else %}
    let s{{ j }} = scale_at(wr{{ j }} * G + g);
{% endif %}
{% if tn > 1 %}
    // the 4 words' nibble pairs, masked once for all token slots
{% for k in range(4) %}
    let m{{ j }}_{{ k }} = (vec4<u32>(wv{{ j }}[{{ k }}]) >> SHIFTS) & vec4<u32>(M);
{% endfor %}
{% endif %}
{% for t in range(tn) %}
{% if tn > 1 %}
    let d{{ j }}_{{ t }} = dot(vec4<f32>(f32(pair_dot(m{{ j }}_0, xv{{ t }}_0)), f32(pair_dot(m{{ j }}_1, xv{{ t }}_1)),
                                 f32(pair_dot(m{{ j }}_2, xv{{ t }}_2)), f32(pair_dot(m{{ j }}_3, xv{{ t }}_3))), sx{{ t }});
{% else %}
    let d{{ j }}_{{ t }} = dot(vec4<f32>(f32(word_dot(wv{{ j }}.x, xv{{ t }}_0)), f32(word_dot(wv{{ j }}.y, xv{{ t }}_1)),
                                 f32(word_dot(wv{{ j }}.z, xv{{ t }}_2)), f32(word_dot(wv{{ j }}.w, xv{{ t }}_3))), sx{{ t }});
{% endif %}
{% if fmt == "q4a" %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + sl{{ j }}.x * d{{ j }}_{{ t }} + sl{{ j }}.y * xsum{{ t }};  // s * sum(q x) + lo * sum(x)
{% else %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + s{{ j }} * (d{{ j }}_{{ t }} - 8.0 * xsum{{ t }});  // nibbles hold q + 8
{% endif %}
{% endfor %}
{% endfor %}
  }
{% else %}
  let xw = t0 * WORDS;  // this token's packed x (bytes: tn == 1)
  let xsw = t0 * (COLS / 8u);  // this token's (sx, sum q) entries
  for (var g = 0u; g < G; g = g + 1u) {
    let xa = xq[xw + 2u * g];  // columns 32g .. 32g+15 as int8
    let xb = xq[xw + 2u * g + 1u];  // columns 32g+16 .. 32g+31
    let sx = vec4<f32>(xs[xsw + 4u * g].x, xs[xsw + 4u * g + 1u].x, xs[xsw + 4u * g + 2u].x, xs[xsw + 4u * g + 3u].x);
{% for j in range(slots) %}
    let wa{{ j }} = w[(wr{{ j }} * G + g) * 2u];  // 8 words = 32 int8
    let wb{{ j }} = w[(wr{{ j }} * G + g) * 2u + 1u];
    let d{{ j }} = dot(vec4<f32>(f32(dot4I8Packed(wa{{ j }}.x, xa.x) + dot4I8Packed(wa{{ j }}.y, xa.y)),
                                 f32(dot4I8Packed(wa{{ j }}.z, xa.z) + dot4I8Packed(wa{{ j }}.w, xa.w)),
                                 f32(dot4I8Packed(wb{{ j }}.x, xb.x) + dot4I8Packed(wb{{ j }}.y, xb.y)),
                                 f32(dot4I8Packed(wb{{ j }}.z, xb.z) + dot4I8Packed(wb{{ j }}.w, xb.w))), sx);
    acc{{ j }}_0 = acc{{ j }}_0 + scale_at(wr{{ j }} * G + g) * d{{ j }};
{% endfor %}
  }
{% endif %}
{% elif path == "quant" %}
  for (var g = 0u; g < FULL; g = g + 1u) {
{{ quant_group(False) }}
  }
{% if tail %}
  {
    let g = FULL;  // last group: columns past COLS are padding (q = 0), x there reads as 0
{{ quant_group(True) }}
  }
{% endif %}
{% elif path == "dq8" %}
  // GGUF block formats, 8 columns per step: _dequant.wgsl's dq_chunk gives the integer codes and
  // one (a, b) per chunk (w = a q + b), so the weights are never materialized: a dot(q, x) + b sum(x)
{% macro dq_step(masked) %}
    let c0 = k * 8u;
{% for j in range(slots) %}
    let ch{{ j }} = dq_chunk(wr{{ j }}, k);
    let s{{ j }} = ch{{ j }}.ab.x;
    let lo{{ j }} = ch{{ j }}.ab.y;
    let w{{ j }}_0 = ch{{ j }}.q0;
    let w{{ j }}_1 = ch{{ j }}.q1;
{% endfor %}
{{ accumulate(2, "c0", masked) }}
{%- endmacro %}
  for (var k = 0u; k < COLS / 8u; k = k + 1u) {
{{ dq_step(False) }}
  }
{% if cols % 8 %}
  {
    let k = COLS / 8u;  // last chunk: columns past COLS are the zero padding of q5/q5a's last block, x reads 0 there
{{ dq_step(True) }}
  }
{% endif %}
{% elif path == "f16vec" %}
  for (var k = 0u; k < COLS / 8u; k = k + 1u) {
    let c0 = k * 8u;
{% for j in range(slots) %}
{{ dq.mm_vec(fmt, j) }}{# w{j}_0, w{j}_1 (_dequant.wgsl) #}
{% endfor %}
{{ accumulate(2, "c0", False) }}
  }
{% elif path == "f32vec" %}
  for (var k = 0u; k < COLS / 4u; k = k + 1u) {
    let c0 = k * 4u;
{% for j in range(slots) %}
{{ dq.mm_vec(fmt, j) }}{# w{j}_0 (_dequant.wgsl) #}
{% endfor %}
{{ accumulate(1, "c0", False) }}
  }
{% else %}
  // rows are not vector-aligned: scalar path
  for (var col = 0u; col < COLS; col = col + 1u) {
{% if norm %}
    let nwc = nat(col);
{% for t in range(tn) %}
    let xa{{ t }} = xat(xr{{ t }} + col);
    ss{{ t }} = ss{{ t }} + xa{{ t }} * xa{{ t }};
    let x{{ t }} = xa{{ t }} * nwc;
{% endfor %}
{% else %}
{% for t in range(tn) %}
    let x{{ t }} = xat(xr{{ t }} + col);
{% endfor %}
{% endif %}
{% for j in range(slots) %}
    let wc{{ j }} = w_at(wr{{ j }} * COLS + col);
{% for t in range(tn) %}
    acc{{ j }}_{{ t }} = acc{{ j }}_{{ t }} + wc{{ j }} * x{{ t }};
{% endfor %}
{% endfor %}
  }
{% endif %}
{% if norm %}
{% for t in range(tn) %}
  let inv{{ t }} = 1.0 / sqrt({{ "ss%d" % t if path == "scalar" else "dot(ss%d, vec4<f32>(1.0))" % t }} / f32(COLS) + NORM_EPS);
{% endfor %}
{% endif %}
{% if splits %}
{% set nb = bounds | length %}
{% for b in bounds %}
  {{ "if" if loop.first else "} else if" if not loop.last else "} else" }}{{ " (r0 < %du)" % b if not loop.last }} {  // rows {{ 0 if loop.first else bounds[loop.index0 - 1] }}..{{ b - 1 }} -> out{{ loop.index0 }}
{{ stores("out%d" % loop.index0, "%du" % splits[loop.index0], "r0" if loop.first else "(r0 - %du)" % bounds[loop.index0 - 1]) | indent(2, first=True) -}}
{% endfor %}
  }
{% else %}
{{ stores("out", "OUT_ROWS", "ROW_OFFSET + r0") -}}
{% endif %}
}
