{#- Online-softmax pieces shared by attention_decode, attention_prefill and encoder_attention
    (options() also by attention_tiled; the opening of the cache forms is _attention_head.wgsl).
    Registers: q0..q{HD4-1} (the query, pre-scaled), acc0.. (sum of e * v), m (running max), l (running sum).
    Key options (no text when unset, so other kernels are unchanged): window (options() declares
    WINDOW, first_key gives the window's first key), softcap (options() declares CAP and tanh_c,
    key_step caps each score: tanh(s / CAP) * CAP). -#}
{% import "_tanh.wgsl" as th %}
{% macro consts() -%}
const HD4: u32 = {{ hd4 }}u;    // head_dim / 4
const GROUP: u32 = {{ group }}u;  // query heads per kv head
const QW4: u32 = {{ qw // 4 }}u;   // q / out row stride in vec4s
const KVW4: u32 = {{ kvw // 4 }}u;  // cache row stride in vec4s
const SCALE: f32 = {{ scale_lit }};
const NEG_BIG: f32 = -1.0e30;  // finite "minus infinity": exp(NEG_BIG - x) == 0 without inf - inf
{%- endmacro %}

{#- the window / softcap constants (templates call it only when one is set) -#}
{% macro options() -%}
{% if window %}
const WINDOW: u32 = {{ window }}u;  // sliding window: the query at t sees keys t-WINDOW+1..t
{% endif %}
{% if softcap %}
const CAP: f32 = {{ cap_lit }};  // score soft-capping: tanh(s / CAP) * CAP

{{ th.tanh_fn("f32") }}
{% endif %}
{%- endmacro %}

{#- main of the per-query forms (prefill, encoder): one invocation per (query qi, head h) -#}
{% macro query_main() -%}
@compute @workgroup_size({{ lanes }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let qi = gid.x;
  let h = gid.y;
  if (qi >= step.n) {
    return;
  }
{%- endmacro %}

{#- the per-query forms' output row: acc / l. Trimmed: the call, indented on its own line, gives the
    first line's indent and the last newline. -#}
{% macro write_out() -%}
{% filter trim %}
  let ob = qi * QW4 + h * HD4;
  let inv = 1.0 / l;
{% for d in range(hd4) %}
  out[ob + {{ d }}u] = A4(acc{{ d }} * inv);
{% endfor %}
{% endfilter %}
{%- endmacro %}

{#- the first key a query with `total` visible keys (0..total-1) attends to -#}
{% macro first_key(total) -%}
{{ "select(0u, " ~ total ~ " - WINDOW, " ~ total ~ " > WINDOW)" if window else "0u" }}
{%- endmacro %}

{% macro load_q(qb) %}
{% for d in range(hd4) %}
  let q{{ d }} = vec4<f32>(q[{{ qb }} + {{ d }}u]) * SCALE;
  var acc{{ d }} = vec4<f32>(0.0);
{% endfor %}
  var m = NEG_BIG;
  var l = 0.0;
{%- endmacro %}

{#- one key/value row at vec4 index kb of the caches -#}
{% macro key_step(kb) %}
    var s = 0.0;
{% for d in range(hd4) %}
    s = s + dot(q{{ d }}, vec4<f32>(k_cache[{{ kb }} + {{ d }}u]));
{% endfor %}
{% if softcap is defined and softcap %}
    s = tanh_c(s / CAP) * CAP;
{% endif %}
    let mn = max(m, s);
    let corr = exp(m - mn);
    let e = exp(s - mn);
    l = l * corr + e;
{% for d in range(hd4) %}
    acc{{ d }} = acc{{ d }} * corr + e * vec4<f32>(v_cache[{{ kb }} + {{ d }}u]);
{% endfor %}
    m = mn;
{%- endmacro %}
