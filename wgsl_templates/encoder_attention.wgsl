{% import "_common.wgsl" as c with context %}
{% import "_attention.wgsl" as att with context %}
{{ c.header(("causal" if causal else "bidirectional") ~ " attention within each row of a packed batch: one invocation per (query, head) with its own online softmax over its row's keys; no barriers") }}
{{ c.prelude() }}

{{ att.consts() }}

{{ att.query_main() }}
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
  {{ att.write_out() }}
}
