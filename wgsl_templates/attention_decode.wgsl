{% import "_attention.wgsl" as att with context %}
{% import "_kv.wgsl" as kvs with context %}
{% set title = "causal GQA attention over cache rows 0..p+n-1, decode form: one workgroup per (head, query); lanes split the keys (online softmax each), one combine through workgroup memory" %}
{% include "_attention_head.wgsl" %}
const LANES: u32 = {{ lanes }}u;

var<workgroup> part_m: array<f32, {{ lanes }}>;
var<workgroup> part_l: array<f32, {{ lanes }}>;
var<workgroup> part_acc: array<vec4<f32>, {{ lanes * hd4 }}>;  // (LANES, HD4)

@compute @workgroup_size({{ lanes }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let h = wid.x;
  let qi = wid.y;  // < n by the dispatch
  let kvh = h / GROUP;
  let total = step.p + qi + 1u;  // causal: keys 0..p+qi
{{ att.load_q("qi * QW4 + h * HD4") }}
{% if window %}
  let first = {{ att.first_key("total") }};  // sliding window
  for (var t = first + lane; t < total; t = t + LANES) {
{% else %}
  for (var t = lane; t < total; t = t + LANES) {
{% endif %}
    let kb = {{ kvs.row("t") }} * KVW4 + kvh * HD4;
{{ att.key_step("kb") }}
  }
  part_m[lane] = m;
  part_l[lane] = l;
{% for d in range(hd4) %}
  part_acc[lane * HD4 + {{ d }}u] = acc{{ d }};
{% endfor %}
  workgroupBarrier();
  var mx = NEG_BIG;
  for (var j = 0u; j < LANES; j = j + 1u) {
    mx = max(mx, part_m[j]);
  }
  var den = 0.0;
  for (var j = 0u; j < LANES; j = j + 1u) {
    den = den + part_l[j] * exp(part_m[j] - mx);
  }
  let ob = qi * QW4 + h * HD4;
  for (var d = lane; d < HD4; d = d + LANES) {
    var o = vec4<f32>(0.0);
    for (var j = 0u; j < LANES; j = j + 1u) {
      o = o + part_acc[j * HD4 + d] * exp(part_m[j] - mx);
    }
    out[ob + d] = A4(o / den);
  }
}
