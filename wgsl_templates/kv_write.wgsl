{% import "_common.wgsl" as c with context %}
{{ c.header("cache[p + i, :] = x[i, :] for i < n; one invocation per element") }}
{{ c.prelude() }}

const WIDTH: u32 = {{ width }}u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let t = gid.y;
  if (col >= WIDTH || t >= step.n) {
    return;
  }
  cache[(step.p + t) * WIDTH + col] = x[t * WIDTH + col];
}
