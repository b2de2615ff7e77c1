{% import "_common.wgsl" as c with context %}
{{ c.header("out[r] = " ~ {"mean": "mean of row r's tokens", "cls": "row r's first token", "last": "row r's last token"}[mode] ~ (", / max(||.||, 1e-12)" if normalize else "") ~ "; one workgroup per row, lanes over the columns") }}
{{ c.prelude() }}

const COLS: u32 = {{ cols }}u;
const LANES: u32 = {{ wg }}u;

{% if normalize %}
var<workgroup> pooled: array<f32, {{ cols }}>;
var<workgroup> partial: array<f32, {{ wg }}>;
{% endif %}

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;  // exactly b workgroups: one per row
  let first = u32(offsets[r]);
  let end = u32(offsets[r + 1u]);
  let lane = lid.x;
{% if normalize %}
  var ss = 0.0;
{% endif %}
  for (var col = lane; col < COLS; col = col + LANES) {
{% if mode == "mean" %}
    var s = 0.0;
    for (var t = first; t < end; t = t + 1u) {
      s = s + f32(x[t * COLS + col]);
    }
    let v = s / f32(end - first);
{% elif mode == "cls" %}
    let v = f32(x[first * COLS + col]);
{% else %}
    let v = f32(x[(end - 1u) * COLS + col]);
{% endif %}
{% if normalize %}
    pooled[col] = v;
    ss = ss + v * v;
{% else %}
    out[r * COLS + col] = A(v);
{% endif %}
  }
{% if normalize %}
  partial[lane] = ss;
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < LANES; i = i + 1u) {  // every lane sums the same partials in the same order
    total = total + partial[i];
  }
  let inv = 1.0 / max(sqrt(total), 1e-12);
  for (var col = lane; col < COLS; col = col + LANES) {
    out[r * COLS + col] = A(pooled[col] * inv);
  }
{% endif %}
}
