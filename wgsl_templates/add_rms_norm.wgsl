{% import "_common.wgsl" as c with context %}
{{ c.header("r = a + b (residual); out = r / sqrt(mean(r^2) + eps) * w; one invocation per token row, no barriers") }}
{{ c.prelude() }}

const COLS: u32 = {{ cols }}u;
const EPS: f32 = {{ eps_lit }};

{% call c.row_main() %}
  var ss = 0.0;
  for (var i = 0u; i < COLS; i = i + 1u) {
    // the residual is rounded to A before it is squared, so out = norm(stored r)
    let rv = A(f32({{ a_name }}[base + i]) + f32(b[base + i]));
    {{ r_name }}[base + i] = rv;
    let v = f32(rv);
    ss = ss + v * v;
  }
  let inv = 1.0 / sqrt(ss / f32(COLS) + EPS);
  for (var i = 0u; i < COLS; i = i + 1u) {
    out[base + i] = A(f32({{ r_name }}[base + i]) * inv * w[i]);
  }
{% endcall %}
