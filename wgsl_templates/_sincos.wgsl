{#- fn sincos_c(a) -> SinCos {s, c}: sin and cos of an angle a in [-pi, pi] (the rope templates reduce
    by 2 pi first) within ~1e-7, from polynomials instead of the builtins. WGSL only bounds the
    sin/cos builtins' absolute error by 2^-11 on [-pi, pi], and SwiftShader (Chromium without a GPU)
    is that coarse: its rope rotations were 6.6e-4 off numpy's where lavapipe's are 2e-7, which moved
    tiny Gemma models' logits 3e-4..2e-3 x max|logit| away from transformers in Chromium.
    a = k pi/2 + r with |r| <= pi/4 (pi/2 in two parts: k * 1.5703125 is exact for |k| <= 2), then
    the Taylor series to r^9 (sin) and r^8 (cos), truncated below 3e-8 at pi/4; the quadrant k mod 4
    swaps and negates them. Local names are prefixed (sc_) so they shadow no kernel binding.
    `F` is f32 or vec2<f32>, `I` the i32 type of the same shape. -#}
{% macro sincos_fn(F, I) -%}
struct SinCos {
  s: {{ F }},
  c: {{ F }},
}

fn sincos_c(a: {{ F }}) -> SinCos {
  let sc_k = round(a * 0.63661977236758134);  // the quadrant: a / (pi / 2), rounded
  let sc_r = (a - sc_k * 1.5703125) - sc_k * 4.8382679489661923e-4;  // |sc_r| <= pi / 4
  let sc_r2 = sc_r * sc_r;
  let sc_s = sc_r + sc_r * sc_r2 * (-1.6666666666666666e-1 + sc_r2 * (8.3333333333333333e-3
             + sc_r2 * (-1.9841269841269841e-4 + sc_r2 * 2.7557319223985891e-6)));
  let sc_c = 1.0 + sc_r2 * (-0.5 + sc_r2 * (4.1666666666666667e-2 + sc_r2 * (-1.3888888888888889e-3
             + sc_r2 * 2.4801587301587302e-5)));
  let sc_q = {{ I }}(sc_k) & {{ I }}(3);  // a = sc_q pi/2 + sc_r (mod 2 pi); -1 & 3 = 3
  let sc_odd = (sc_q & {{ I }}(1)) != {{ I }}(0);  // quadrants 1, 3: sin(a) = +-cos(r), cos(a) = -+sin(r)
  let sc_sin = select(sc_s, sc_c, sc_odd);
  let sc_cos = select(sc_c, sc_s, sc_odd);
  return SinCos(select(sc_sin, -sc_sin, (sc_q & {{ I }}(2)) != {{ I }}(0)),  // sin < 0 in quadrants 2, 3
                select(sc_cos, -sc_cos, ((sc_q + {{ I }}(1)) & {{ I }}(2)) != {{ I }}(0)));  // cos < 0 in 1, 2
}
{%- endmacro %}
