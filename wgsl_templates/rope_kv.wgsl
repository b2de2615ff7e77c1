{% import "_common.wgsl" as c with context %}
{{ c.header("rotary embedding at positions p..p+n-1: q rotated in place, rope(k) -> k_cache and v -> v_cache rows p..p+n-1; one invocation per (token, rotation pair), no barriers") }}
{{ c.prelude() }}

const HEADS: u32 = {{ heads }}u;  // q heads
const KV_HEADS: u32 = {{ kv_heads }}u;  // k/v heads
const HD: u32 = {{ head_dim }}u;
const HALF: u32 = {{ half }}u;  // pairs (i, i + HALF) within each head
const QW: u32 = {{ qw }}u;  // q row width
const KVW: u32 = {{ kvw }}u;  // k, v and cache row width
const QPAIRS: u32 = {{ qpairs }}u;  // invocations 0..QPAIRS-1 of a token rotate q, the next KVPAIRS k (+ copy v)
const KVPAIRS: u32 = {{ kvpairs }}u;

// cos/sin of a large angle: reduce by 2*pi in two parts (Cody-Waite) first, so
// that drivers whose sin/cos are only accurate on [-pi, pi] still match the
// reference at long positions. 6.28125 has 8 significant bits: m * C1 is exact.
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;  // q: head * HALF + i; k: QPAIRS + kv_head * HALF + i
  let t = gid.y;
  if (j >= QPAIRS + KVPAIRS || t >= step.n) {
    return;
  }
  let is_q = j < QPAIRS;
  let jj = select(j - QPAIRS, j, is_q);
  let head = jj / HALF;
  let i = jj % HALF;
  let pos = step.p + t;
  let ang = f32(pos) * inv_freq[i];
  let m = round(ang * INV_TWO_PI);
  let red = (ang - m * TWO_PI_HI) - m * TWO_PI_LO;
  let cs = cos(red);
  let sn = sin(red);
  if (is_q) {
    let src = t * QW + head * HD + i;
    let x1 = f32(q[src]);
    let x2 = f32(q[src + HALF]);
    q[src] = A(x1 * cs - x2 * sn);
    q[src + HALF] = A(x2 * cs + x1 * sn);
  } else {
    let src = t * KVW + head * HD + i;
    let dst = pos * KVW + head * HD + i;
    let x1 = f32(k[src]);
    let x2 = f32(k[src + HALF]);
    k_cache[dst] = A(x1 * cs - x2 * sn);
    k_cache[dst + HALF] = A(x2 * cs + x1 * sn);
    v_cache[dst] = v[src];
    v_cache[dst + HALF] = v[src + HALF];
  }
}
