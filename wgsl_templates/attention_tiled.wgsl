{% import "_common.wgsl" as c with context %}
{% import "_kv.wgsl" as kvs with context %}
{% import "_attention.wgsl" as att with context %}
{{ c.header("causal GQA prefill attention, FlashAttention-2 tiles: one workgroup per (tile of " ~ tq ~ " (query, q head) rows, kv head); K/V tiles of " ~ tk ~ " keys in workgroup memory, online softmax per row in registers") }}
// Shape assumptions: head_dim % 4 == 0; row r of tile x is global row x*TQ + r = (query row / GROUP,
// q head kv_head*GROUP + row % GROUP). {{ lpr }} lanes per row each own {{ chunks }} vec4 chunks
// (c = lane_in_row + LPR*i) of the row's accumulator. Workgroup storage {{ storage }} bytes.
// The tiles visited end at the tile's last query (p + qi); keys past a row's own causal limit are
// masked inside a tile; cache rows >= p+n are never read.
{{ c.prelude() }}

const HD4: u32 = {{ hd4 }}u;     // head_dim / 4
const GROUP: u32 = {{ group }}u;   // q heads per kv head
const QW4: u32 = {{ qw // 4 }}u;    // q / out row stride in vec4s
const KVW4: u32 = {{ kvw // 4 }}u;   // cache row stride in vec4s
const SCALE: f32 = {{ scale_lit }};
const NEG_BIG: f32 = -1.0e30;   // finite "minus infinity": exp(NEG_BIG - m) == 0 without inf - inf
const TQ: u32 = {{ tq }}u;       // rows per workgroup
const TK: u32 = {{ tk }}u;       // keys per tile
const LPR: u32 = {{ lpr }}u;      // lanes per row in the softmax / P.V phase
const WG: u32 = {{ wg }}u;      // TQ * LPR
const PAD4: u32 = HD4 + 1u;     // padded row stride (vec4s) of the Q and K tiles: lanes reading different
                                // rows of one column fall in different banks

{% if window or softcap %}
{{ att.options() -}}  {#- its lines end in a newline; no blank line follows here #}
{% endif %}
var<workgroup> q_tile: array<vec4<f32>, {{ tq * (hd4 + 1) }}>;  // (TQ, PAD4): q * SCALE
var<workgroup> k_tile: array<vec4<f32>, {{ tk * (hd4 + 1) }}>;  // (TK, PAD4)
var<workgroup> v_tile: array<vec4<f32>, {{ tk * hd4 }}>;  // (TK, HD4)
var<workgroup> s_tile: array<f32, {{ tq * tk }}>;  // (TQ, TK) scores of the current key tile

{{ kvs.load4_fn("load_k", "k_cache", kv) }}

{{ kvs.load4_fn("load_v", "v_cache", kv) }}
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let kvh = wid.y;
  let row0 = wid.x * TQ;
  let rows = step.n * GROUP;
  // keys 0..keys-1 are seen by some row of this tile (its last query's causal limit); later tiles are skipped
  let keys = step.p + (min(row0 + TQ, rows) - 1u) / GROUP + 1u;

  for (var e = lane; e < TQ * HD4; e = e + WG) {
    let r = e / HD4;
    let d = e % HD4;
    let row = row0 + r;
    var v = vec4<f32>(0.0);
    if (row < rows) {
      v = vec4<f32>(q[(row / GROUP) * QW4 + (kvh * GROUP + row % GROUP) * HD4 + d]) * SCALE;
    }
    q_tile[r * PAD4 + d] = v;
  }

  // this lane's row in the softmax / P.V phase
  let r = lane / LPR;
  let j = lane % LPR;
  let row = row0 + r;
  let live = row < rows;
  var m = NEG_BIG;
  var l = 0.0;
{% for i in range(chunks) %}
  var acc{{ i }} = vec4<f32>(0.0);
{% endfor %}

{% if window %}
  // the first key of the tile's first row's window; earlier key tiles are seen by no row
  let first_pos = step.p + row0 / GROUP;
  let kstart = select(0u, first_pos + 1u - WINDOW, first_pos + 1u > WINDOW);
  for (var k0 = kstart; k0 < keys; k0 = k0 + TK) {
{% else %}
  for (var k0 = 0u; k0 < keys; k0 = k0 + TK) {
{% endif %}
    workgroupBarrier();  // the previous tile's readers are done (first time: the Q tile is written)
    for (var e = lane; e < TK * HD4; e = e + WG) {
      let t = e / HD4;
      let d = e % HD4;
      var kt = vec4<f32>(0.0);
      var vt = vec4<f32>(0.0);
      if (k0 + t < keys) {
        let kb = {{ kvs.row("k0 + t") }} * KVW4 + kvh * HD4 + d;
        kt = load_k(kb);
        vt = load_v(kb);
      }
      k_tile[t * PAD4 + d] = kt;
      v_tile[t * HD4 + d] = vt;
    }
    workgroupBarrier();

    // scores of this lane's row for keys j, j + LPR, ... (KPL of them): one Q load per {{ kpu if passes > 1 else 'KPL' }} K loads;
    // the row's LPR lanes read different (padded) K rows, the row groups share them
    let visible_to = step.p + row / GROUP;  // causal: the last key this row sees
{% set looped = passes > 1 %}
{% if looped %}
    // {{ kpu }} keys per pass of {{ passes }}: unrolling all {{ kpl }} keys' vec4 sums at once made SwiftShader's
    // shader compiler run for minutes and lose the device (32 keys at one lane per row)
    for (var i0 = 0u; i0 < {{ kpl }}u; i0 = i0 + {{ kpu }}u) {
{% endif %}
{% set ind = "  " if looped else "" %}
{% for i in range(kpu) %}
{% set kj = "j + (i0 + " ~ i ~ "u) * LPR" if looped else "j + " ~ i ~ "u * LPR" %}
{% set guard = (looped and (ragged or kpl % kpu)) or (ragged and loop.last) %}
    {{ ind }}let t{{ i }} = {{ "min(" ~ kj ~ ", TK - 1u)" if guard else kj }};
    {{ ind }}var sc{{ i }} = vec4<f32>(0.0);
{% endfor %}
    {{ ind }}for (var d = 0u; d < HD4; d = d + 1u) {
    {{ ind }}  let qd = q_tile[r * PAD4 + d];
{% for i in range(kpu) %}
    {{ ind }}  sc{{ i }} = sc{{ i }} + qd * k_tile[t{{ i }} * PAD4 + d];
{% endfor %}
    {{ ind }}}
{% for i in range(kpu) %}
{% set kj = "j + (i0 + " ~ i ~ "u) * LPR" if looped else "j + " ~ i ~ "u * LPR" %}
{% set guard = (looped and (ragged or kpl % kpu)) or (ragged and loop.last) %}
{% if guard %}
    {{ ind }}if ({{ kj }} < TK) {  // {{ "the last pass may run past the tile" if looped else "lanes j >= TK % LPR have one key fewer" }}
{% endif %}
{% set score = "sc" ~ i ~ ".x + sc" ~ i ~ ".y + sc" ~ i ~ ".z + sc" ~ i ~ ".w" %}
{% if softcap %}{% set score = "tanh_c((" ~ score ~ ") / CAP) * CAP" %}{% endif %}
    {{ ind }}{{ "  " if guard }}s_tile[r * TK + t{{ i }}] = select(NEG_BIG, {{ score }},
    {{ ind }}{{ "  " if guard }}                          live && k0 + t{{ i }} <= visible_to{{ " && k0 + t" ~ i ~ " + WINDOW > visible_to" if window }});
{% if guard %}
    {{ ind }}}
{% endif %}
{% endfor %}
{% if looped %}
    }
{% endif %}
    workgroupBarrier();

    // online softmax of this row over the tile (every lane of the row keeps the same m, l);
    // key 0 is in the first tile and visible to every row, so m is a real score from then on
    if (live) {
      var mt = m;
      for (var t = 0u; t < TK; t = t + 1u) {
        mt = max(mt, s_tile[r * TK + t]);
      }
      let corr = exp(m - mt);
      l = l * corr;
{% for i in range(chunks) %}
      acc{{ i }} = acc{{ i }} * corr;
{% endfor %}
      for (var t = 0u; t < TK; t = t + 1u) {
{% if window %}
        // a row whose window starts past this tile has only masked keys here (m stays NEG_BIG)
        let st = s_tile[r * TK + t];
        let pe = select(0.0, exp(st - mt), st > 0.5 * NEG_BIG);
{% else %}
        let pe = exp(s_tile[r * TK + t] - mt);
{% endif %}
        l = l + pe;
        let vb = t * HD4 + j;
{% for i in range(chunks) %}
        acc{{ i }} = acc{{ i }} + pe * v_tile[vb + {{ i }}u * LPR];
{% endfor %}
      }
      m = mt;
    }
  }

  if (live) {
    let ob = (row / GROUP) * QW4 + (kvh * GROUP + row % GROUP) * HD4 + j;
    let inv = 1.0 / l;
{% for i in range(chunks) %}
    out[ob + {{ i }}u * LPR] = A4(acc{{ i }} * inv);
{% endfor %}
  }
}
