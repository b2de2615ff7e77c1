{% import "_common.wgsl" as c with context %}
{% import "_dequant.wgsl" as dq %}
{% set R = rows_per_wg %}
{% set silu = epilogue == "silu_mul" %}
{% set lin = ("rms_norm(x) @ dequant(w).T" if norm else "x @ dequant(w).T") ~ (" + bias" if bias else "") %}
{% if silu %}
{% set lin = "silu(" ~ lin ~ " [gate rows]) * (" ~ lin ~ " [up rows])" %}
{% endif %}
{% set title = ("out += " if epilogue == "residual" else "out = ") ~ lin ~ ("; rows split over " ~ splits | length ~ " outputs" if splits else "") %}
{{ c.header(title ~ "; GEMV: one workgroup per " ~ R ~ " output row(s) x 1 token, its " ~ wg ~ " lanes split K, "
   ~ ("subgroupAdd + workgroup combine" if subgroups else "workgroup-memory tree reduction")) }}
{% if subgroups %}
enable subgroups;
{% endif %}
{{ c.prelude() }}

// Shape: lane l of a workgroup takes blocks l, l + LANES, ... (a block = BLK columns = one
// lane-load of weight words, so adjacent lanes read adjacent words); it loads each x chunk once
// and accumulates it against the R weight rows of the workgroup{{ " (and their up rows)" if silu }}.
// Then the lanes' partial sums are reduced per slot and lane j < R finishes output row r0 + j.
const ROWS: u32 = {{ rows }}u;  // out_features
const COLS: u32 = {{ cols }}u;  // in_features
const LANES: u32 = {{ wg }}u;
const R: u32 = {{ R }}u;  // output rows per workgroup
const BLK: u32 = {{ blk }}u;  // columns per block
const NFULL: u32 = {{ nfull }}u;  // blocks entirely inside COLS
const SLOTS: u32 = {{ nslots }}u;  // reduced values per lane: {{ wslots }} weight rows{{ " + the sum of squares" if norm }}
const ROW_OFFSET: u32 = {{ row_offset }}u;  // this weight slice's first row within the full output
const OUT_ROWS: u32 = {{ out_rows or rows }}u;  // row stride of out
{% if norm %}
const NORM_EPS: f32 = {{ norm_eps_lit }};  // RMSNorm prologue: inv(t) = 1 / sqrt(mean(x^2) + eps)
{% endif %}
{{ dq.fns(fmt, cols) }}

{% if xvec %}
// x (and norm_w) rows are 16-byte aligned (COLS % 4 == 0): vec4 loads; col % 4 == 0
fn ldx(xr: u32, col: u32) -> vec4<f32> {
  return vec4<f32>(x[(xr + col) >> 2u]);
}
// columns >= COLS read as 0 (the x sentinel or the next row may be NaN; the weight there is finite)
fn ldxm(xr: u32, col: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), ldx(xr, col), col < COLS);
}
{% if norm %}
fn ldn(col: u32) -> vec4<f32> {
  return norm_w[col >> 2u];
}
fn ldnm(col: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), norm_w[min(col, COLS - 4u) >> 2u], col < COLS);
}
{% endif %}
{% else %}
fn ldx(xr: u32, col: u32) -> vec4<f32> {
  return vec4<f32>(f32(x[xr + col]), f32(x[xr + col + 1u]), f32(x[xr + col + 2u]), f32(x[xr + col + 3u]));
}
fn ldxm(xr: u32, col: u32) -> vec4<f32> {
  let c = vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u);
  return select(vec4<f32>(0.0), ldx(xr, col), c < vec4<u32>(COLS));
}
{% if norm %}
fn ldn(col: u32) -> vec4<f32> {
  return vec4<f32>(norm_w[col], norm_w[col + 1u], norm_w[col + 2u], norm_w[col + 3u]);
}
fn ldnm(col: u32) -> vec4<f32> {
  let c = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(COLS - 1u));  // in bounds; masked by x = 0
  return vec4<f32>(norm_w[c.x], norm_w[c.y], norm_w[c.z], norm_w[c.w]);
}
{% endif %}
{% endif %}

{% if subgroups %}
// one slot per (subgroup, value); subgroup size >= {{ min_subgroup }}, so at most LANES / {{ min_subgroup }} subgroups
var<workgroup> red: array<f32, {{ wg // min_subgroup }}u * SLOTS>;
var<workgroup> sg_count: atomic<u32>;  // subgroups that have left their sums (their index in red)
{% else %}
var<workgroup> red: array<f32, LANES * SLOTS>;  // slot s of lane l at s * LANES + l
{% endif %}

{#- One block b of this lane: x chunk loaded once (masked: the partial last block), then every row slot. -#}
{% macro block(b, masked) %}
    let c0 = {{ b }} * BLK;
    var xb: array<vec4<f32>, DQ_BV>;
    for (var i = 0u; i < DQ_BV; i = i + 1u) {
{% if masked %}
      let xa = ldxm(xr, c0 + 4u * i);
{% else %}
      let xa = ldx(xr, c0 + 4u * i);
{% endif %}
{% if norm %}
      ss = ss + dot(xa, xa);
{% if masked %}
      xb[i] = xa * ldnm(c0 + 4u * i);
{% else %}
      xb[i] = xa * ldn(c0 + 4u * i);
{% endif %}
{% else %}
      xb[i] = xa;
{% endif %}
    }
{% for j in range(wslots) %}
    acc{{ j }} = acc{{ j }} + dq_dot(wr{{ j }}, {{ b }}, xb);
{% endfor %}
{%- endmacro %}

{% if subgroups %}
// the workgroup's sum of slot s: the subgroups' sums left in red by their first lanes
fn total(s: u32, nsg: u32) -> f32 {
  var t = 0.0;
  for (var g = 0u; g < nsg; g = g + 1u) {
    t = t + red[g * SLOTS + s];
  }
  return t;
}
{% else %}
fn total(s: u32, nsg: u32) -> f32 {
  return red[s * LANES];
}
{% endif %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>{% if subgroups %},
        @builtin(subgroup_invocation_id) sg_lane: u32{% endif %}) {
  let r0 = wid.x * R;  // first of this workgroup's R output rows
{% if last_row %}
  let t = step.n - 1u;  // only the last token's row
{% else %}
  let t = wid.y;
{% endif %}
  let xr = t * COLS;  // this token's x row
{% for j in range(R) %}
  let wr{{ j }} = min(r0 + {{ j }}u, ROWS - 1u);  // weight row of row slot {{ j }} (clamped, store skipped)
{% endfor %}
{% for j in range(R, wslots) %}
  let wr{{ j }} = wr{{ j - R }} + ROWS;  // up row of row slot {{ j - R }}
{% endfor %}
{% for j in range(wslots) %}
  var acc{{ j }} = 0.0;
{% endfor %}
{% if norm %}
  var ss = 0.0;  // this lane's part of the sum of x^2
{% endif %}
  for (var b = lane; b < NFULL; b = b + LANES) {
{{ block("b", False) }}{# the macro ends its own last line #}
  }
{% if tail %}
  if (lane == NFULL % LANES) {  // the lane whose next block is the partial last one
{{ block("NFULL", True) }}{# #}
  }
{% endif %}
{% set vals = [] %}
{% for j in range(wslots) %}{% set _ = vals.append("acc%d" % j) %}{% endfor %}
{% if norm %}{% set _ = vals.append("ss") %}{% endif %}
{% if subgroups %}
  // subgroupAdd per slot, then the first lane of each subgroup leaves its sums in red at the index an
  // atomic counter hands out: no assumption on how the lanes are split into subgroups or on their size.
{% for v in vals %}
  let s{{ loop.index0 }} = subgroupAdd({{ v }});
{% endfor %}
  if (lane == 0u) {
    atomicStore(&sg_count, 0u);  // explicit: not every runtime zero-fills workgroup memory
  }
  workgroupBarrier();
  if (sg_lane == 0u) {
    let g = atomicAdd(&sg_count, 1u);
{% for v in vals %}
    red[g * SLOTS + {{ loop.index0 }}u] = s{{ loop.index0 }};
{% endfor %}
  }
  workgroupBarrier();
  let nsg = atomicLoad(&sg_count);
{% else %}
  let nsg = 1u;
{% for v in vals %}
  red[{{ loop.index0 }}u * LANES + lane] = {{ v }};
{% endfor %}
  for (var h = LANES / 2u; h > 0u; h = h >> 1u) {  // tree: log2(LANES) halving steps
    workgroupBarrier();
    if (lane < h) {
      for (var s = 0u; s < SLOTS; s = s + 1u) {
        red[s * LANES + lane] = red[s * LANES + lane] + red[s * LANES + lane + h];
      }
    }
  }
  workgroupBarrier();
{% endif %}
  let r = r0 + lane;  // lane j < R finishes output row r0 + j
  if (lane >= R || r >= ROWS) {
    return;
  }
{% if norm %}
  let inv = 1.0 / sqrt(total(SLOTS - 1u, nsg) / f32(COLS) + NORM_EPS);
{% endif %}
{% set scale = " * inv" if norm else "" %}
{% if silu %}
  let gate = total(lane, nsg){{ scale }}{{ " + bias[r]" if bias }};
  let up = total(R + lane, nsg){{ scale }}{{ " + bias[ROWS + r]" if bias }};
  let v = gate / (1.0 + exp(-gate)) * up;
{% else %}
  let v = total(lane, nsg){{ scale }}{{ " + bias[ROW_OFFSET + r]" if bias }};
{% endif %}
{% if splits %}
{% for b in bounds %}
  {{ "if" if loop.first else "} else if" if not loop.last else "} else" }}{{ " (r < %du)" % b if not loop.last }} {  // rows {{ 0 if loop.first else bounds[loop.index0 - 1] }}..{{ b - 1 }} -> out{{ loop.index0 }}
    out{{ loop.index0 }}[t * {{ splits[loop.index0] }}u + r{{ " - %du" % bounds[loop.index0 - 1] if not loop.first }}] = A(v);
{% endfor %}
  }
{% else %}
  let o = {{ "0u" if last_row else "t * OUT_ROWS" }} + ROW_OFFSET + r;
{% if epilogue == "residual" %}
  out[o] = A(f32(out[o]) + v);
{% else %}
  out[o] = A(v);
{% endif %}
{% endif %}
}
