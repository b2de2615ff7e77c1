{% import "_attention.wgsl" as att with context %}
{% import "_kv.wgsl" as kvs with context %}
{% set title = "causal GQA attention over cache rows 0..p+n-1, prefill form: one invocation per (query, head) with its own online softmax; no barriers, no score matrix" %}
{% include "_attention_head.wgsl" %}

{{ att.query_main() }}
  let kvh = h / GROUP;
  let total = step.p + qi + 1u;  // causal: keys 0..p+qi
{{ att.load_q("qi * QW4 + h * HD4") }}
  for (var t = {{ att.first_key("total") }}; t < total; t = t + 1u) {
    let kb = {{ kvs.row("t") }} * KVW4 + kvh * HD4;
{{ att.key_step("kb") }}
  }
  {{ att.write_out() }}
}
