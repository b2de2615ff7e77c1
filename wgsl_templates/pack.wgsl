{% import "_common.wgsl" as c with context %}
{{ c.header("x packed for an integer-dot-product matmul (layout " ~ pack_layout ~ "); one invocation per (token, 8 columns)") }}
{{ c.prelude() }}

const CHUNKS: u32 = {{ chunks }}u;  // 8-column entries per row

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let t = gid.y;
  if (c >= CHUNKS || t >= step.n) {
    return;
  }
  let o = t * CHUNKS + c;
  pack8(o, vec4<f32>(x[2u * o]), vec4<f32>(x[2u * o + 1u]));  // x as vec4: entry o = vec4s 2o, 2o+1
}

{{ c.pack8_fn(pack_layout) }}
