{% import "_common.wgsl" as c with context %}
{{ c.header("out[0, :] = x[n-1, :]; one invocation per element") }}
{{ c.prelude() }}

const COLS: u32 = {{ cols }}u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  if (col >= COLS) {
    return;
  }
  out[col] = x[(step.n - 1u) * COLS + col];
}
