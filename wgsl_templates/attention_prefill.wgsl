{% import "_common.wgsl" as c with context %}
{% import "_attention.wgsl" as att with context %}
{% import "_kv.wgsl" as kvs with context %}
{{ c.header("causal GQA attention over cache rows 0..p+n-1, prefill form: one invocation per (query, head) with its own online softmax; no barriers, no score matrix") }}
{{ c.prelude() }}

{{ att.consts() }}
{% if window or softcap %}
{{ att.options() }}
{% endif %}
{% if ring %}

{{ kvs.ring_fn() }}
{% endif %}

@compute @workgroup_size({{ lanes }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let qi = gid.x;
  let h = gid.y;
  if (qi >= step.n) {
    return;
  }
  let kvh = h / GROUP;
  let total = step.p + qi + 1u;  // causal: keys 0..p+qi
{{ att.load_q("qi * QW4 + h * HD4") }}
  for (var t = {{ att.first_key("total") }}; t < total; t = t + 1u) {
    let kb = {{ kvs.row("t") }} * KVW4 + kvh * HD4;
{{ att.key_step("kb") }}
  }
  let ob = qi * QW4 + h * HD4;
  let inv = 1.0 / l;
{% for d in range(hd4) %}
  out[ob + {{ d }}u] = A4(acc{{ d }} * inv);
{% endfor %}
}
