{% import "_common.wgsl" as c with context %}
{{ c.header("out[0] = the argmax of logits row args.row (args.cols values): lowest id wins ties, NaN beats everything (as numpy's argmax); one workgroup, lanes strided over the columns, then a tree in workgroup memory") }}
{{ c.prelude() }}

// Shape: ONE workgroup of {{ wg }} lanes. Lane l reads columns l, l + {{ wg }}, ... (adjacent lanes read
// adjacent elements: coalesced), so the serial chain is cols / {{ wg }} loads (49152 ids: 192) plus
// log2({{ wg }}) combine steps. A second pass over several workgroups would add a dispatch, the fixed
// cost this kernel exists to remove. No float arithmetic or comparison: WGSL lets a compiler assume
// NaN and infinities away, so values are compared as integer keys that order like the floats.
struct Args {
  cols: u32,  // values in a row (the vocabulary)
  row: u32,   // which row of logits to reduce
  _pad0: u32,
  _pad1: u32,
}

const LANES: u32 = {{ wg }}u;

var<workgroup> best_key: array<u32, {{ wg }}>;
var<workgroup> best_id: array<u32, {{ wg }}>;

{% if act == "f32" %}
// u32 key ordered as the f32 value `bits`: NaN above +inf, -0 equal to +0, never 0.
fn order_key(bits: u32) -> u32 {
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    return 0xFFFFFFFFu;
  }
  let b = select(bits, 0u, bits == 0x80000000u);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn value_key(e: u32) -> u32 {
  return order_key(logits[e]);
}
{% else %}
// u32 key ordered as the f16 value `h` (low 16 bits): NaN above +inf, -0 equal to +0, never 0.
fn order_key(h: u32) -> u32 {
  if ((h & 0x7FFFu) > 0x7C00u) {
    return 0xFFFFFFFFu;
  }
  let b = select(h, 0u, h == 0x8000u);
  return select(b | 0x8000u, ~b & 0xFFFFu, (b & 0x8000u) != 0u);
}

fn value_key(e: u32) -> u32 {
  return order_key((logits[e >> 1u] >> ((e & 1u) * 16u)) & 0xFFFFu);  // two halves per word, low first
}
{% endif %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  let base = args.row * args.cols;
  // key 0 is no value's key, so an empty lane (cols < LANES) loses to every real one
  var key = 0u;
  var id = 0xFFFFFFFFu;
  for (var i = lane; i < args.cols; i = i + LANES) {
    let k = value_key(base + i);
    if (k > key) {  // strictly greater: the lane keeps its lowest id of a tie (ids ascend)
      key = k;
      id = i;
    }
  }
  best_key[lane] = key;
  best_id[lane] = id;
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lane < s) {
      let k = best_key[lane + s];
      let j = best_id[lane + s];
      if (k > best_key[lane] || (k == best_key[lane] && j < best_id[lane])) {
        best_key[lane] = k;
        best_id[lane] = j;
      }
    }
  }
  if (lane == 0u) {
    out[0] = best_id[0];
  }
}
