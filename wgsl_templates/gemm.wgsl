{% import "_common.wgsl" as c with context %}
{% import "_dequant.wgsl" as dq %}
{% set silu = epilogue == "silu_mul" %}
{% set xper = (x_items + lanes - 1) // lanes %}
{% set wper = (w_items + lanes - 1) // lanes %}
{% set lin = ("rms_norm(x) @ dequant(w).T" if norm else "x @ dequant(w).T") ~ (" + bias" if bias else "") %}
{% if silu %}
{% set lin = "silu(" ~ lin ~ " [gate rows]) * (" ~ lin ~ " [up rows])" %}
{% endif %}
{% set title = ("out += " if epilogue == "residual" else "out = ") ~ lin ~ ("; rows split over " ~ splits | length ~ " outputs" if splits else "") %}
{{ c.header(title ~ "; one workgroup per " ~ tm ~ " tokens x " ~ tn ~ " rows, x and dequantized weight tiles in workgroup memory") }}
//
// Shape: {{ lanes }} lanes = ({{ tm }}/4 token lanes) x ({{ tn }}/4 row lanes); lane (ty, tx) owns tokens
// t0 + ty + i*{{ tm // 4 }} and rows r0 + tx + j*{{ tn // 4 }} (i, j < 4; interleaved: adjacent lanes read
// different banks and store adjacent rows). K loop: one 32-column group per step; the workgroup
// copies the x tile and the dequantized weight tile ({{ wtile }} rows: each weight dequantized once per
// token tile) into workgroup memory as rows of 8 vec4 (+1 padding vec4, so the 16-byte loads of 8
// adjacent lanes hit distinct banks), barrier; then per 4 columns each lane loads 4 x and {{ 8 if silu else 4 }} weight
// vec4s and does {{ 32 if silu else 16 }} dot products; barrier. Step g+1's global loads and dequantization
// go to registers (xr*, wr*) right after step g's first barrier, in flight during its compute.
// Partial tiles: x columns >= COLS and tokens >= n load as 0, weight rows >= ROWS are clamped
// (their outputs are not stored).
{{ c.prelude() }}

const ROWS: u32 = {{ rows }}u;  // out_features
const COLS: u32 = {{ cols }}u;  // in_features
const G: u32 = {{ groups }}u;   // 32-column groups per weight row (K steps)
const ROW_OFFSET: u32 = {{ row_offset }}u;  // this weight slice's first row within the full output
const OUT_ROWS: u32 = {{ out_rows or rows }}u;  // row stride of out
const TM: u32 = {{ tm }}u;  // tokens per workgroup
const TN: u32 = {{ tn }}u;  // output rows per workgroup
const LANES: u32 = {{ lanes }}u;
const RS: u32 = 9u;  // vec4 per tile row: the group's 8 (32 columns) + 1 padding
const X_ITEMS: u32 = {{ x_items }}u;  // x tile loads per K step: (token, 4 columns), {{ xper }} per lane
const W_ITEMS: u32 = {{ w_items }}u;  // weight tile loads per K step: (tile row, 8 columns), one dq8 each, {{ wper }} per lane
{% if norm %}
const NORM_EPS: f32 = {{ norm_eps_lit }};  // RMSNorm prologue: inv(t) = 1 / sqrt(mean(x^2) + eps)
{% endif %}

// tiles: xs[token * RS + c4], ws[tile row * RS + c4] = columns 4*c4 .. 4*c4+3 of the group{{ " (tile rows TN.. are the up rows)" if silu }}
var<workgroup> xs: array<vec4<f32>, {{ tm * 9 }}>;
var<workgroup> ws: array<vec4<f32>, {{ wtile * 9 }}>;

{% if xvec %}
// 4 columns of token row t starting at col (col % 4 == 0, COLS % 4 == 0: whole vec4 or none)
fn ldx(t: u32, col: u32, ok: bool) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(x[t * (COLS / 4u) + col / 4u]), ok && col < COLS);
}
{% else %}
fn ldx1(t: u32, col: u32, ok: bool) -> f32 {
  return select(0.0, f32(x[t * COLS + col]), ok && col < COLS);
}
fn ldx(t: u32, col: u32, ok: bool) -> vec4<f32> {
  return vec4<f32>(ldx1(t, col, ok), ldx1(t, col + 1u, ok), ldx1(t, col + 2u, ok), ldx1(t, col + 3u, ok));
}
{% endif %}
{% if norm %}
fn ldn(col: u32) -> vec4<f32> {
  let c = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(COLS - 1u));
  return vec4<f32>(norm_w[c.x], norm_w[c.y], norm_w[c.z], norm_w[c.w]);
}
{% endif %}

{{ dq.fns(fmt, cols) }}

// The loads of one K step (g): x item `item` (token item / 8, columns 4 * (item % 8) .. +3 of the
// group; 0 past the tile's X_ITEMS, tokens >= n and COLS) and weight item `item` (tile row item / 4,
// columns 8 * (item % 4) .. +7; items past W_ITEMS read a valid row, never stored).
fn fetch_x(item: u32, t0: u32, n: u32, g: u32) -> vec4<f32> {
  let t = item / 8u;
  return ldx(t0 + t, g * 32u + 4u * (item % 8u), item < X_ITEMS && t0 + t < n);
}

fn fetch_w(item: u32, r0: u32, g: u32) -> mat2x4<f32> {
  let it = min(item, W_ITEMS - 1u);
  let lr = it / 4u;  // tile row
{% if silu %}
  let wr = min(r0 + lr % TN, ROWS - 1u) + select(0u, ROWS, lr >= TN);  // gate row, or its up row
{% else %}
  let wr = min(r0 + lr, ROWS - 1u);  // rows past ROWS clamped (their outputs are not stored)
{% endif %}
  return dq8(wr, g * 4u + it % 4u);  // _dequant.wgsl; columns past COLS come back finite (x is 0 there)
}

{#- Registers xr{m} / wr{m} <- this lane's loads of K step `g` (issued before the compute of the
    step before it, so their latency overlaps it); the norm's sums of squares are taken here. -#}
{% macro fetch(g) %}
{% for m in range(xper) %}
{% if norm %}
    let xa{{ m }} = fetch_x(lane + {{ m * lanes }}u, t0, n, {{ g }});
    ss{{ m }} = ss{{ m }} + dot(xa{{ m }}, xa{{ m }});
    xr{{ m }} = xa{{ m }} * ldn({{ g }} * 32u + 4u * ((lane + {{ m * lanes }}u) % 8u));
{% else %}
    xr{{ m }} = fetch_x(lane + {{ m * lanes }}u, t0, n, {{ g }});
{% endif %}
{% endfor %}
{% for m in range(wper) %}
    wr{{ m }} = fetch_w(lane + {{ m * lanes }}u, r0, {{ g }});
{% endfor %}
{%- endmacro %}

{% macro store(buf, o, v) -%}
{% if epilogue == "residual" %}
{{ buf }}[{{ o }}] = A(f32({{ buf }}[{{ o }}]) + {{ v }});
{%- else %}
{{ buf }}[{{ o }}] = A({{ v }});
{%- endif %}
{%- endmacro %}

@compute @workgroup_size({{ lanes }}, 1, 1)
fn main(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let n = step.n;
  let r0 = wid.x * TN;  // first row of this tile
  let t0 = wid.y * TM;  // first token of this tile
  let tx = lane % (TN / 4u);
  let ty = lane / (TN / 4u);
{% for i in range(4) %}
  var acc{{ i }} = vec4<f32>(0.0);  // token ty + {{ i }}*TM/4, rows tx + j*TN/4 (j = component)
{% if silu %}
  var up{{ i }} = vec4<f32>(0.0);
{% endif %}
{% endfor %}
{% for m in range(xper) %}
  var xr{{ m }}: vec4<f32>;  // x item lane + {{ m * lanes }} of the next K step
{% if norm %}
  var ss{{ m }} = 0.0;  // its token's sum of x^2 over the item's 4 columns of every group
{% endif %}
{% endfor %}
{% for m in range(wper) %}
  var wr{{ m }}: mat2x4<f32>;  // weight item lane + {{ m * lanes }} of the next K step
{% endfor %}
  {
    {{ fetch("0u") | trim }}
  }
  for (var g = 0u; g < G; g = g + 1u) {
    // x tile: 8 adjacent lanes hold one token's 32 columns (read as 128 contiguous bytes)
{% for m in range(xper) %}
{% set item = "lane + %du" % (m * lanes) %}
{% if (m + 1) * lanes > x_items %}
    if ({{ item }} < X_ITEMS) {
      xs[(({{ item }}) / 8u) * RS + ({{ item }}) % 8u] = xr{{ m }};
    }
{% else %}
    xs[(({{ item }}) / 8u) * RS + ({{ item }}) % 8u] = xr{{ m }};
{% endif %}
{% endfor %}
    // weight tile: each weight dequantized once per (token tile, K step)
{% for m in range(wper) %}
{% set item = "lane + %du" % (m * lanes) %}
{% if (m + 1) * lanes > w_items %}
    if ({{ item }} < W_ITEMS) {
      ws[(({{ item }}) / 4u) * RS + 2u * (({{ item }}) % 4u)] = wr{{ m }}[0];
      ws[(({{ item }}) / 4u) * RS + 2u * (({{ item }}) % 4u) + 1u] = wr{{ m }}[1];
    }
{% else %}
    ws[(({{ item }}) / 4u) * RS + 2u * (({{ item }}) % 4u)] = wr{{ m }}[0];
    ws[(({{ item }}) / 4u) * RS + 2u * (({{ item }}) % 4u) + 1u] = wr{{ m }}[1];
{% endif %}
{% endfor %}
    workgroupBarrier();
    if (g + 1u < G) {  // the next step's loads, in flight during this step's compute
      {{ fetch("(g + 1u)") | trim | indent(2) }}
    }
    for (var c4 = 0u; c4 < 8u; c4 = c4 + 1u) {
{% for i in range(4) %}
      let x{{ i }} = xs[(ty + {{ i }}u * (TM / 4u)) * RS + c4];
{% endfor %}
{% for j in range(4) %}
      let w{{ j }} = ws[(tx + {{ j }}u * (TN / 4u)) * RS + c4];
{% if silu %}
      let u{{ j }} = ws[(TN + tx + {{ j }}u * (TN / 4u)) * RS + c4];
{% endif %}
{% endfor %}
{% for i in range(4) %}
      acc{{ i }} = acc{{ i }} + vec4<f32>(dot(x{{ i }}, w0), dot(x{{ i }}, w1), dot(x{{ i }}, w2), dot(x{{ i }}, w3));
{% if silu %}
      up{{ i }} = up{{ i }} + vec4<f32>(dot(x{{ i }}, u0), dot(x{{ i }}, u1), dot(x{{ i }}, u2), dot(x{{ i }}, u3));
{% endif %}
{% endfor %}
    }
    workgroupBarrier();
  }
{% if norm %}
  // RMSNorm: the 8 loader items of each token hold its partial sums of squares; combine them
  // through the (now free) x tile
{% for m in range(xper) %}
{% if (m + 1) * lanes > x_items %}
  if (lane + {{ m * lanes }}u < X_ITEMS) {
    xs[lane + {{ m * lanes }}u] = vec4<f32>(ss{{ m }}, 0.0, 0.0, 0.0);
  }
{% else %}
  xs[lane + {{ m * lanes }}u] = vec4<f32>(ss{{ m }}, 0.0, 0.0, 0.0);
{% endif %}
{% endfor %}
  workgroupBarrier();
{% for i in range(4) %}
  let tt{{ i }} = (ty + {{ i }}u * (TM / 4u)) * 8u;
  let inv{{ i }} = 1.0 / sqrt(({% for c in range(8) %}{{ " + " if c }}xs[tt{{ i }} + {{ c }}u].x{% endfor %}) / f32(COLS) + NORM_EPS);
{% endfor %}
{% endif %}
{% for i in range(4) %}
  {
    let t = t0 + ty + {{ i }}u * (TM / 4u);
{% for j in range(4) %}
    let row{{ j }} = r0 + tx + {{ j }}u * (TN / 4u);
    if (t < n && row{{ j }} < ROWS) {
{% set a = "acc%d[%d]" % (i, j) ~ (" * inv%d" % i if norm) %}
{% if silu %}
      let gv = {{ a }}{{ " + bias[row%d]" % j if bias }};
      let uv = up{{ i }}[{{ j }}]{{ " * inv%d" % i if norm }}{{ " + bias[ROWS + row%d]" % j if bias }};
{% set v = "gv / (1.0 + exp(-gv)) * uv" %}
{% else %}
{% set v = a ~ (" + bias[ROW_OFFSET + row%d]" % j if bias else "") %}
{% endif %}
{% if splits %}
{% for b in bounds %}
      {{ "if" if loop.first else "} else if" if not loop.last else "} else" }}{{ " (row%d < %du)" % (j, b) if not loop.last }} {  // rows {{ 0 if loop.first else bounds[loop.index0 - 1] }}..{{ b - 1 }}
        {{ store("out%d" % loop.index0, "t * %du + row%d%s" % (splits[loop.index0], j, "" if loop.first else " - %du" % bounds[loop.index0 - 1]), v) }}
{% endfor %}
      }
{% else %}
      {{ store("out", "t * OUT_ROWS + ROW_OFFSET + row%d" % j, v) }}
{% endif %}
    }
{% endfor %}
  }
{% endfor %}
}
