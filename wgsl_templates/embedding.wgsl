{% import "_common.wgsl" as c with context %}
{% if dq8 %}{% import "_dequant.wgsl" as dq %}{% endif %}
{{ c.header("out[i, :] = dequant(table[ids[i], :]); one invocation per output element") }}
{{ c.prelude() }}

const VOCAB: u32 = {{ vocab }}u;
const HIDDEN: u32 = {{ hidden }}u;
const VOCAB_OFFSET: u32 = {{ vocab_offset }}u;
const G: u32 = {{ groups }}u;  // 32-column groups per row (quantized formats)

{% if dq8 %}
{{ dq.fns(fmt, hidden) }}
{% elif fmt in ("q4", "q8", "f16") %}
{{ c.half_fn("half_at", "scales" if fmt != "f16" else "w") }}
{% endif %}

fn w_at(r: u32, col: u32) -> f32 {
{% if dq8 %}
  return dq8(r, col / 8u)[(col % 8u) / 4u][col % 4u];  // GGUF block formats (_dequant.wgsl)
{% elif fmt == "q4a" %}
  let word = w[r * G * 4u + col / 8u];
  let sl = unpack2x16float(scales[r * G + col / 32u]);  // (scale, lo)
  return f32((word >> (4u * (col % 8u))) & 15u) * sl.x + sl.y;
{% elif fmt == "q4" %}
  let word = w[r * G * 4u + col / 8u];
  let q = f32((word >> (4u * (col % 8u))) & 15u) - 8.0;
  return q * half_at(r * G + col / 32u);
{% elif fmt == "q8" %}
  let word = w[r * G * 8u + col / 4u];
  let q = f32(bitcast<i32>(word << (24u - 8u * (col % 4u))) >> 24u);
  return q * half_at(r * G + col / 32u);
{% elif fmt == "f16" %}
  return half_at(r * HIDDEN + col);
{% else %}
  return w[r * HIDDEN + col];
{% endif %}
}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let t = gid.y;
  if (col >= HIDDEN || t >= step.n) {
    return;
  }
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
}
