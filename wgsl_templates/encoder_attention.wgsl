{% import "_common.wgsl" as c with context %}
{% import "_attention.wgsl" as att with context %}
{{ c.header(("causal" if causal else "bidirectional") ~ " attention within each row of a packed batch: one invocation per (query, head) with its own online softmax over its row's keys; no barriers") }}
{{ c.prelude() }}

{{ att.consts() }}

@compute @workgroup_size({{ lanes }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let qi = gid.x;
  let h = gid.y;
  if (qi >= step.n) {
    return;
  }
  let r = u32(rows[qi]);
  let first = u32(offsets[r]);
{% if causal %}
  let end = qi + 1u;  // causal: keys of the query's own row up to itself
{% else %}
  let end = u32(offsets[r + 1u]);  // keys of the query's own row only: the padding mask of a packed batch
{% endif %}
  let kvh = h / GROUP;
{{ att.load_q("qi * QW4 + h * HD4") }}
  for (var t = first; t < end; t = t + 1u) {
    let kb = t * KVW4 + kvh * HD4;
{{ att.key_step("kb") }}
  }
  let ob = qi * QW4 + h * HD4;
  let inv = 1.0 / l;
{% for d in range(hd4) %}
  out[ob + {{ d }}u] = A4(acc{{ d }} * inv);
{% endfor %}
}
