{% import "_common.wgsl" as c with context %}
{{ c.header("out[0] = the argmax of logits row args.row (args.cols values): lowest id wins ties, NaN beats everything (as numpy's argmax); one workgroup, lanes strided over the columns, then a tree in workgroup memory") }}
{{ c.prelude() }}

// Shape: ONE workgroup of {{ wg }} lanes over 16-byte chunks of the row ({{ per }} values each). Lane l
// takes chunks l, l + {{ wg }}, l + 2 * {{ wg }}, ... (adjacent lanes read adjacent chunks: coalesced),
// UNROLL of them loaded before any is compared, so each lane keeps UNROLL loads in flight (a
// single workgroup is latency-bound: 49152 f32 ids are 48 chunks per lane, 12 round trips).
// A second pass over several workgroups would add a dispatch, the fixed cost this kernel exists
// to remove. No float arithmetic or comparison: WGSL lets a compiler assume NaN and infinities
// away, so values are compared as integer keys that order like the floats. The row may start
// anywhere in a chunk (row * cols); values outside [row * cols, (row + 1) * cols) are skipped,
// and the binding is a whole number of chunks (every buffer is rounded up to 16 bytes).
struct Args {
  cols: u32,  // values in a row (the vocabulary)
  row: u32,   // which row of logits to reduce
  _pad0: u32,
  _pad1: u32,
}

const LANES: u32 = {{ wg }}u;
const PER: u32 = {{ per }}u;  // values per vec4<u32> chunk
const UNROLL: u32 = 4u;

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

// the key of value i (0..3) of a chunk
fn chunk_key(c: vec4<u32>, i: u32) -> u32 {
  return order_key(c[i]);
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

// the key of value i (0..7) of a chunk: two halves per word, low half first
fn chunk_key(c: vec4<u32>, i: u32) -> u32 {
  return order_key((c[i >> 1u] >> ((i & 1u) * 16u)) & 0xFFFFu);
}
{% endif %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  let base = args.row * args.cols;
  let end = base + args.cols;
  let last = (end + PER - 1u) / PER;  // chunks [base / PER, last) hold the row
  // key 0 is no value's key, so an empty lane (cols < LANES) loses to every real one
  var key = 0u;
  var id = 0xFFFFFFFFu;
  for (var j = base / PER + lane; j < last; j = j + LANES * UNROLL) {
    var c: array<vec4<u32>, 4>;
    for (var u = 0u; u < UNROLL; u = u + 1u) {
      if (j + u * LANES < last) {
        c[u] = logits[j + u * LANES];
      }
    }
    // chunks and values in ascending order, strictly greater: the lane keeps its lowest id of a tie
    for (var u = 0u; u < UNROLL; u = u + 1u) {
      for (var i = 0u; i < PER; i = i + 1u) {
        let e = (j + u * LANES) * PER + i;
        if (e >= base && e < end) {
          let k = chunk_key(c[u], i);
          if (k > key) {
            key = k;
            id = e - base;
          }
        }
      }
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
