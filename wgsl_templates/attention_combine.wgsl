{% import "_common.wgsl" as c with context %}
{{ c.header("flash-decoding combine phase: one workgroup per (head, query) merges the query's (p + qi) // block + 1 split partials: lanes over blocks for (max, sum) (online pairs, a workgroup-memory tree), then lanes over head_dim/4 x block slices for the output") }}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;
const HD4: u32 = {{ hd4 }}u;  // head_dim / 4
const QW4: u32 = {{ qw4 }}u;  // out row stride in vec4s
const BLOCK: u32 = {{ block }}u;  // keys per split workgroup
const WG: u32 = {{ wg }}u;  // lanes (a power of two >= HD4)
const SLICES: u32 = {{ slices }}u;  // block slices of the output phase: lane = slice * HD4 + d4
const REC: u32 = {{ hd4 + 1 }}u;  // vec4s per partial record: (m, l, 0, 0), acc
const NEG_BIG: f32 = -1.0e30;

var<workgroup> red_m: array<f32, {{ wg }}>;
var<workgroup> red_l: array<f32, {{ wg }}>;
var<workgroup> acc_sh: array<vec4<f32>, {{ slices * hd4 }}>;  // (SLICES, HD4)

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let h = wid.x;
  let qi = wid.y;  // < n by the dispatch
  let nb = (step.p + step.n + BLOCK - 1u) / BLOCK;  // records per (query, head)
  let nbq = (step.p + qi) / BLOCK + 1u;  // blocks this query has
  let r0 = (qi * HEADS + h) * nb;
  // (m, l) over this lane's blocks, online: l is relative to m
  var m = NEG_BIG;
  var l = 0.0;
  for (var b = lane; b < nbq; b = b + WG) {
    let ml = partial[(r0 + b) * REC];
    let mn = max(m, ml.x);
    l = l * exp(m - mn) + ml.y * exp(ml.x - mn);
    m = mn;
  }
  red_m[lane] = m;
  red_l[lane] = l;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) {
      let m2 = red_m[lane + s];
      let mn = max(m, m2);
      l = l * exp(m - mn) + red_l[lane + s] * exp(m2 - mn);
      m = mn;
      red_m[lane] = m;
      red_l[lane] = l;
    }
    workgroupBarrier();
  }
  let mx = red_m[0];
  let den = red_l[0];

  let d4 = lane % HD4;
  let slice = lane / HD4;
  var o = vec4<f32>(0.0);
  if (slice < SLICES) {
    for (var b = slice; b < nbq; b = b + SLICES) {
      let rb = (r0 + b) * REC;
      o = o + partial[rb + 1u + d4] * exp(partial[rb].x - mx);
    }
    acc_sh[lane] = o;
  }
  workgroupBarrier();
  if (lane < HD4) {
    var t = acc_sh[lane];
    for (var j = 1u; j < SLICES; j = j + 1u) {
      t = t + acc_sh[j * HD4 + lane];
    }
    out[qi * QW4 + h * HD4 + lane] = A4(t / den);
  }
}
