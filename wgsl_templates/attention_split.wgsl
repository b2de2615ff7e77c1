{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% import "_tanh.wgsl" as th %}
{{ c.header("flash-decoding split phase: one workgroup per (key block, kv head, query); the GROUP q heads of the kv head share every K/V row load; scores one key per lane (K row as head_dim/4 16-byte loads), V lanes over head_dim/4 x key slices (coalesced rows); block max/sum by " ~ ("subgroupMax/subgroupAdd + one value per subgroup through workgroup memory" if subgroups else "a workgroup-memory tree") ~ "; writes (m, l, acc) per (query, head, block) to partial") }}
{% if subgroups %}
enable subgroups;
{% endif %}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;
const GROUP: u32 = {{ group }}u;  // q heads per kv head (adjacent q heads: kv head h // GROUP)
const HD4: u32 = {{ hd4 }}u;  // head_dim / 4
const QW4: u32 = {{ qw4 }}u;  // q row stride in vec4s
const KVW4: u32 = {{ kvw4 }}u;  // cache row stride in vec4 entries
const BLOCK: u32 = {{ block }}u;  // keys per workgroup
const WG: u32 = {{ wg }}u;  // lanes (a power of two >= HD4)
const SLICES: u32 = {{ slices }}u;  // key slices of the V phase: lane = slice * HD4 + d4
const REC: u32 = {{ hd4 + 1 }}u;  // vec4s per partial record: (m, l, 0, 0), acc
const SCALE: f32 = {{ scale_lit }};
const NEG_BIG: f32 = -1.0e30;  // finite "minus infinity": exp(NEG_BIG - x) == 0, no inf - inf
{% if window %}
const WINDOW: u32 = {{ window }}u;  // sliding window: query qi sees keys p+qi-WINDOW+1..p+qi
{% endif %}
{% if softcap %}
const CAP: f32 = {{ cap_lit }};  // score soft-capping: tanh(s / CAP) * CAP

{{ th.tanh_fn("f32") }}
{% endif %}

var<workgroup> q_sh: array<vec4<f32>, {{ group * hd4 }}>;  // (GROUP, HD4), pre-scaled
var<workgroup> s_sh: array<f32, {{ group * block }}>;  // (GROUP, BLOCK): scores, then exp(s - m)
var<workgroup> red_sh: array<f32, {{ group * wg }}>;  // (GROUP, WG) reduction slots
var<workgroup> acc_sh: array<vec4<f32>, {{ slices * hd4 }}>;  // (SLICES, HD4) V-slice combine

{{ kvs.load4_fn("load_k", "k_cache", kv) }}

{{ kvs.load4_fn("load_v", "v_cache", kv) }}
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}

fn add_f(a: f32, b: f32) -> f32 {
  return a + b;
}

{# r{g} = the workgroup's `op` ("max" | "add_f") of the lanes' v{g}, in every lane; red_sh free after. #}
{% macro reduce(op, sub_op, v, r) %}
{% if subgroups %}
{% for g in range(group) %}
  let {{ v }}_sg{{ g }} = {{ sub_op }}({{ v }}{{ g }});
{% endfor %}
  if (sl == 0u) {
{% for g in range(group) %}
    red_sh[{{ g }}u * WG + lane / sg] = {{ v }}_sg{{ g }};
{% endfor %}
  }
  workgroupBarrier();
  let {{ v }}_nsg = (WG + sg - 1u) / sg;
{% for g in range(group) %}
  var {{ r }}{{ g }} = red_sh[{{ g }}u * WG];
{% endfor %}
  for (var j = 1u; j < {{ v }}_nsg; j = j + 1u) {
{% for g in range(group) %}
    {{ r }}{{ g }} = {{ op }}({{ r }}{{ g }}, red_sh[{{ g }}u * WG + j]);
{% endfor %}
  }
{% else %}
{% for g in range(group) %}
  red_sh[{{ g }}u * WG + lane] = {{ v }}{{ g }};
{% endfor %}
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) {
{% for g in range(group) %}
      red_sh[{{ g }}u * WG + lane] = {{ op }}(red_sh[{{ g }}u * WG + lane], red_sh[{{ g }}u * WG + lane + s]);
{% endfor %}
    }
    workgroupBarrier();
  }
{% for g in range(group) %}
  let {{ r }}{{ g }} = red_sh[{{ g }}u * WG];
{% endfor %}
{% endif %}
  workgroupBarrier();
{%- endmacro %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32{% if subgroups %},
        @builtin(subgroup_size) sg: u32, @builtin(subgroup_invocation_id) sl: u32{% endif %}) {
  let b = wid.x;  // key block
  let kvh = wid.y;
  let qi = wid.z;  // < n by the dispatch
  let total = step.p + qi + 1u;  // causal: keys 0..p+qi
  let k0 = b * BLOCK;
  if (k0 >= total) {
    return;  // a block past this query's keys (n > 1 only); uniform: workgroup id and Step
  }
{% if window %}
  let nb = (step.p + step.n + BLOCK - 1u) / BLOCK;  // records per (query, head) in partial
  // keys ks..k0+nk-1 of the block are in the window (ks = k0 unless the window starts inside it)
  let lo = select(0u, total - WINDOW, total > WINDOW);
  if (k0 + BLOCK <= lo) {
    // the whole block is before the window: an empty record (m = NEG_BIG, l = 0: weight 0 in the combine)
{% for g in range(group) %}
    let erec{{ g }} = ((qi * HEADS + kvh * GROUP + {{ g }}u) * nb + b) * REC;
    for (var i = lane; i < REC; i = i + WG) {
      partial[erec{{ g }} + i] = select(vec4<f32>(0.0), vec4<f32>(NEG_BIG, 0.0, 0.0, 0.0), i == 0u);
    }
{% endfor %}
    return;  // uniform: workgroup id and Step
  }
  let ks = max(k0, lo);
  let nk = min(k0 + BLOCK, total) - ks;  // keys of the block this query sees (>= 1)
{% else %}
  let nk = min(BLOCK, total - k0);  // keys of the block this query sees (>= 1)
  let nb = (step.p + step.n + BLOCK - 1u) / BLOCK;  // records per (query, head) in partial
{% endif %}
  // the GROUP q heads of kv head kvh are adjacent in the q row
  let qb = qi * QW4 + kvh * GROUP * HD4;
  for (var i = lane; i < GROUP * HD4; i = i + WG) {
    q_sh[i] = vec4<f32>(q[qb + i]) * SCALE;
  }
  workgroupBarrier();

  // scores: one key per lane, the GROUP heads at once
{% for g in range(group) %}
  var m{{ g }} = NEG_BIG;
{% endfor %}
  for (var tt = lane; tt < nk; tt = tt + WG) {
    let kb = {{ kvs.row(("ks" if window else "k0") ~ " + tt") }} * KVW4 + kvh * HD4;
{% for g in range(group) %}
    var s{{ g }} = 0.0;
{% endfor %}
    for (var d = 0u; d < HD4; d = d + 1u) {
      let kk = load_k(kb + d);
{% for g in range(group) %}
      s{{ g }} = s{{ g }} + dot(q_sh[{{ g }}u * HD4 + d], kk);
{% endfor %}
    }
{% for g in range(group) %}
{% if softcap %}
    s{{ g }} = tanh_c(s{{ g }} / CAP) * CAP;
{% endif %}
    s_sh[{{ g }}u * BLOCK + tt] = s{{ g }};
    m{{ g }} = max(m{{ g }}, s{{ g }});
{% endfor %}
  }
{{ reduce("max", "subgroupMax", "m", "mx") }}

  // exp(s - m) in place (each lane its own keys) and the block's sums
{% for g in range(group) %}
  var l{{ g }} = 0.0;
{% endfor %}
  for (var tt = lane; tt < nk; tt = tt + WG) {
{% for g in range(group) %}
    let e{{ g }} = exp(s_sh[{{ g }}u * BLOCK + tt] - mx{{ g }});
    s_sh[{{ g }}u * BLOCK + tt] = e{{ g }};
    l{{ g }} = l{{ g }} + e{{ g }};
{% endfor %}
  }
{{ reduce("add_f", "subgroupAdd", "l", "sum") }}

  // acc = sum e * v: lanes over head_dim/4 (coalesced V rows) x SLICES key slices
  let d4 = lane % HD4;
  let slice = lane / HD4;
{% for g in range(group) %}
  var a{{ g }} = vec4<f32>(0.0);
{% endfor %}
  if (slice < SLICES) {
    for (var tt = slice; tt < nk; tt = tt + SLICES) {
      let vv = load_v({{ kvs.row(("ks" if window else "k0") ~ " + tt") }} * KVW4 + kvh * HD4 + d4);
{% for g in range(group) %}
      a{{ g }} = a{{ g }} + s_sh[{{ g }}u * BLOCK + tt] * vv;
{% endfor %}
    }
  }
{% for g in range(group) %}
  // head kvh * GROUP + {{ g }}: combine the slices, write the record
  if (slice < SLICES) {
    acc_sh[lane] = a{{ g }};
  }
  workgroupBarrier();
  let rec{{ g }} = ((qi * HEADS + kvh * GROUP + {{ g }}u) * nb + b) * REC;
  if (lane < HD4) {
    var o = acc_sh[lane];
    for (var j = 1u; j < SLICES; j = j + 1u) {
      o = o + acc_sh[j * HD4 + lane];
    }
    partial[rec{{ g }} + 1u + lane] = o;
  }
  if (lane == 0u) {
    partial[rec{{ g }}] = vec4<f32>(mx{{ g }}, sum{{ g }}, 0.0, 0.0);
  }
  workgroupBarrier();
{% endfor %}
}
