{#- Rotary-embedding pieces shared by rope.wgsl (RopeKey, RowRopeKey) and rope_kv.wgsl (RopeKvKey);
    import with context. From the key's optional fields (RowRopeKey has none) it exports partial
    (only the first rotary_dim features of a head rotate), long (longrope: a short and a long
    frequency table), tbl (the table's offset in an inv_freq index), sc (the factor on cos and sin)
    and extra (the header's words for them). consts() declares their constants, the 2 pi reduction's
    and sincos_c; cos_sin() turns the angle `ang` into cs and sn. -#}
{% import "_sincos.wgsl" as trig %}
{% set partial = rotary_dim is defined and rotary_dim != 0 and rotary_dim != head_dim %}
{% set long = long_after is defined and long_after != 0 %}
{% set tbl = "tbl + " if long else "" %}
{% set sc = " * COS_SCALE" if cos_scale is defined and cos_scale != 1.0 else "" %}
{% set extra = ("; the first " ~ rotary_dim ~ " features of each head rotate, the rest pass through (partial rotary)" if partial else "") ~ ("; longrope: inv_freq holds the short then the long frequencies, the long ones for a forward call ending past " ~ long_after ~ " (step._pad0)" if long else "") ~ ("; cos and sin times the attention factor" if sc else "") %}

{#- rest: what becomes of features ROT..HD-1 (the comment's words); m: the name cos_sin() gives the
    multiple of 2 pi (rope_kv's k is the key buffer); pairs: sincos_c on vec2 (f16x2 caches) -#}
{% macro consts(rest, m, pairs) -%}
{% if partial %}
const ROT: u32 = {{ rotary_dim }}u;  // features of each head that rotate; ROT..HD-1 {{ rest }}
const SLOTS: u32 = {{ slots }}u;  // pair slots per head: HALF rotate, the rest copy 2 features each
{% endif %}
{% if long %}
const LONG_AFTER: u32 = {{ long_after }}u;  // longrope: a call ending past it uses inv_freq[HALF..2 HALF)
{% endif %}
{% if sc %}
const COS_SCALE: f32 = {{ cos_scale_lit }};  // longrope's attention factor on cos and sin
{% endif %}

// cos/sin of a large angle: reduce by 2*pi in two parts (Cody-Waite) first, so
// that drivers whose sin/cos are only accurate on [-pi, pi] still match the
// reference at long positions. 6.28125 has 8 significant bits: {{ m }} * C1 is exact.
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

{{ trig.sincos_fn("vec2<f32>", "vec2<i32>") if pairs else trig.sincos_fn("f32", "i32") }}
{%- endmacro %}

{#- cs, sn: cos and sin of `ang` (f32, or vec2 with consts' pairs), times COS_SCALE when set -#}
{% macro cos_sin(m) %}
  let {{ m }} = round(ang * INV_TWO_PI);
  let red = (ang - {{ m }} * TWO_PI_HI) - {{ m }} * TWO_PI_LO;
  let sc2 = sincos_c(red);  // not the builtins: see _sincos.wgsl
  let cs = sc2.c{{ sc }};
  let sn = sc2.s{{ sc }};
{%- endmacro %}
