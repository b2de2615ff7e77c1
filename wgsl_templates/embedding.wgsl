{% import "_common.wgsl" as c with context %}
{% import "_dequant.wgsl" as dq %}
{{ c.header("out[i, :] = dequant(table[ids[i], :]); one invocation per output element") }}
{{ c.prelude() }}

const VOCAB: u32 = {{ vocab }}u;
const HIDDEN: u32 = {{ hidden }}u;
const VOCAB_OFFSET: u32 = {{ vocab_offset }}u;
const G: u32 = {{ groups }}u;  // 32-column groups per row (quantized formats)

{% if dq8 %}
{{ dq.fns(fmt, hidden) }}
{% else %}
{{ dq.emb_fns(fmt) }}{# the format's readers (_dequant.wgsl) #}
{% endif %}

fn w_at(r: u32, col: u32) -> f32 {
{% if dq8 %}
  return dq8(r, col / 8u)[(col % 8u) / 4u][col % 4u];  // GGUF block formats (_dequant.wgsl)
{% else %}
{{ dq.emb_w_at(fmt) }}{# (_dequant.wgsl) #}
{% endif %}
}

{% call c.column_main("HIDDEN") %}
{% if sliced %}
  // this dispatch owns ids VOCAB_OFFSET .. VOCAB_OFFSET + VOCAB - 1 of a table split in slices
  let id = u32(ids[t]);
  if (id < VOCAB_OFFSET || id >= VOCAB_OFFSET + VOCAB) {
    return;
  }
  let r = id - VOCAB_OFFSET;
{% else %}
  let r = min(u32(ids[t]), VOCAB - 1u);  // out-of-range ids read the last row, never out of bounds
{% endif %}
{% if scale != 1.0 %}
  out[t * HIDDEN + col] = A(w_at(r, col)) * A({{ scale_lit }});  // scaled in the activation dtype
{% else %}
  out[t * HIDDEN + col] = A(w_at(r, col));
{% endif %}
{% endcall %}
