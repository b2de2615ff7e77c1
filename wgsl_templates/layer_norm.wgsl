{% import "_common.wgsl" as c with context %}
{{ c.header("out = (x - mean) / sqrt(var + eps) * w + b per row; one invocation per row, no barriers") }}
{{ c.prelude() }}

const COLS: u32 = {{ cols }}u;
const EPS: f32 = {{ eps_lit }};

{% call c.row_main() %}
  var s = 0.0;
  for (var i = 0u; i < COLS; i = i + 1u) {
    s = s + f32(x[base + i]);
  }
  let mean = s / f32(COLS);
  // the variance around the mean (a second pass, as torch): no cancellation of E[x^2] - mean^2
  var ss = 0.0;
  for (var i = 0u; i < COLS; i = i + 1u) {
    let d = f32(x[base + i]) - mean;
    ss = ss + d * d;
  }
  let inv = 1.0 / sqrt(ss / f32(COLS) + EPS);
  for (var i = 0u; i < COLS; i = i + 1u) {
    out[base + i] = A((f32(x[base + i]) - mean) * inv * w[i] + b[i]);
  }
{% endcall %}
