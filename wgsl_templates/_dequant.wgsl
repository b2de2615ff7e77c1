{#- Weight-format dequantization: the ONE place where each stored format (quant/formats.py) is read.

HOW TO ADD A FORMAT: (1) its numpy quantize/dequantize in webllm_py/quant/formats.py (the bit layout
in that docstring is the contract); (2) one entry in FORMATS below (bindings, block size); (3) one
`{% elif fmt == ... %}` arm in `fns` giving dq8 and dq_dot for it; (4) its name in tests/test_gpu_gemv.py's
FORMATS (those tests check dq8, dq_dot and the GEMV against quant.formats.dequantize). Nothing else changes:
kernels (gemv, gemm, ...) only call dq8 / dq_dot and read FORMATS.

Import with `{% import "_dequant.wgsl" as dq %}` and call `{{ dq.fns(fmt, cols) }}`; Python reads the
table through webllm_py/codegen/dequant.py (`weight_decls`, `block_cols`).

FORMATS[fmt]: the weight bindings, in binding order, as (name, WGSL type, layout comment); the
comment's {rows}/{cols}/{g} are filled by the planner (g = ceil(cols / 32) groups per row).
`vec_cols`: the float formats bind vector arrays only when a row starts 16-byte aligned
(cols % vec_cols == 0; else the scalar type `scalar`). `kq` (the GGUF block formats q5, q5a,
q2k..q6k, kept bit for bit; layouts in quant/kquant.py): the block's columns `e`, data words
`words`, the word offset of each bit plane ("nib", "two", "bit") within a block (-1: none),
sub-block columns `sub` (0: one f16 scale per block); one generic arm (_kq_fns) reads them. `block`: columns one dq_dot call covers,
the unit a GEMV lane loads per step, so that adjacent lanes read adjacent words (coalesced):
one vec4 (16 bytes) for f32/f16/q8, one u32 for q4/q4a (8 columns: a Llama hidden of 1024 is
128 blocks, so 128 lanes can split one row; a 32-column group per lane would leave 32).

WGSL functions emitted by fns(fmt, cols) (they read the bindings "w" / "scales" and the constants
DQ_COLS, DQ_G it defines; no other names):
  fn dq8(row, c8) -> mat2x4<f32>     weights of columns 8*c8 .. 8*c8+7 of `row` (column 0..3 in [0],
                                     4..7 in [1]); any kernel shape (tiles, embedding rows).
  fn dq_dot(row, b, xb) -> f32       sum over block b's DQ_BLOCK columns of w * x, x given as
                                     xb: array<vec4<f32>, DQ_BV> (columns 4i..4i+3 of the block in xb[i]);
                                     the GEMV's per-group form: one scale read and multiply per block
                                     (a block is inside one group; a lane meets a group once per row),
                                     nibbles/bytes to f32 by the exact bitcast<f32>(0x4B000000u | q) - 2^23
                                     trick (q < 2^23: the OR writes q into the mantissa of 2^23) instead of
                                     an int->float convert, the q4 offset 8 and the q8 sign folded into the
                                     subtracted constant.
Columns past DQ_COLS (the last group's padding, or the next row for float formats) come back finite;
callers feed x = 0 there. -#}

{% import "_common.wgsl" as c %}
{% set FORMATS = {
  "f32": {"block": 4, "vec_cols": 4, "bindings": [
    ["w", "array<vec4<f32>>", "({rows}, {cols}) f32"]], "scalar": "array<f32>"},
  "f16": {"block": 8, "vec_cols": 8, "bindings": [
    ["w", "array<vec4<u32>>", "({rows}, {cols}) f16, two per u32 word"]], "scalar": "array<u32>"},
  "q8": {"block": 16, "vec_cols": 1, "bindings": [
    ["w", "array<vec4<u32>>", "({rows}, {g}*8) u32: int8 q, column c at bits 8*(c%4) of word c/4"],
    ["scales", "array<u32>", "({rows}, {g}) f16 scales, two per u32 word"]]},
  "q4": {"block": 8, "vec_cols": 1, "bindings": [
    ["w", "array<vec4<u32>>", "({rows}, {g}*4) u32: 4-bit q+8 nibbles, column c at bits 4*(c%8) of word c/8"],
    ["scales", "array<u32>", "({rows}, {g}) f16 scales, two per u32 word"]]},
  "q4a": {"block": 8, "vec_cols": 1, "lo": true, "bindings": [
    ["w", "array<vec4<u32>>", "({rows}, {g}*4) u32: 4-bit q nibbles, column c at bits 4*(c%8) of word c/8"],
    ["scales", "array<u32>", "({rows}, {g}) u32: f16 (scale, lo) pair per group, w = scale*q + lo"]]},
  "q5": {"block": 8, "vec_cols": 1, "kq": {"e": 32, "words": 5, "nib": 0, "two": -1, "bit": 4, "sub": 0}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*5) u32 per 32-column block: 4 nibble words + the GGUF qh word; q = nib | bit << 4"],
    ["scales", "array<u32>", "({rows}, {g}) f16 d, two per u32 word; w = d * (q - 16)"]]},
  "q5a": {"block": 8, "vec_cols": 1, "kq": {"e": 32, "words": 5, "nib": 0, "two": -1, "bit": 4, "sub": 0}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*5) u32 per 32-column block: 4 nibble words + the GGUF qh word; q = nib | bit << 4"],
    ["scales", "array<u32>", "({rows}, {g}) u32: f16 (d, m) pair per block; w = d * q + m"]]},
  "q2k": {"block": 8, "vec_cols": 1, "kq": {"e": 256, "words": 16, "nib": -1, "two": 0, "bit": -1, "sub": 16}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*2) u32: 16 crumb words per 256-column block"],
    ["scales", "array<u32>", "({rows}, {g}/8*5) u32 per block: f16 d | dmin << 16, 16 bytes sc | mn << 4"]]},
  "q3k": {"block": 8, "vec_cols": 1, "kq": {"e": 256, "words": 24, "nib": -1, "two": 0, "bit": 16, "sub": 16}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*3) u32 per 256-column block: 16 crumb words + 8 hmask bit words"],
    ["scales", "array<u32>", "({rows}, {g}/8*5) u32 per block: f16 d, 16 bytes 6-bit sc (w uses sc - 32)"]]},
  "q4k": {"block": 8, "vec_cols": 1, "kq": {"e": 256, "words": 32, "nib": 0, "two": -1, "bit": -1, "sub": 32}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*4) u32: 32 nibble words per 256-column block"],
    ["scales", "array<u32>", "({rows}, {g}/8*5) u32 per block: f16 d | dmin << 16, bytes sc[8], mn[8]"]]},
  "q5k": {"block": 8, "vec_cols": 1, "kq": {"e": 256, "words": 40, "nib": 0, "two": -1, "bit": 32, "sub": 32}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*5) u32 per 256-column block: 32 nibble words + 8 high-bit words"],
    ["scales", "array<u32>", "({rows}, {g}/8*5) u32 per block: f16 d | dmin << 16, bytes sc[8], mn[8]"]]},
  "q6k": {"block": 8, "vec_cols": 1, "kq": {"e": 256, "words": 48, "nib": 0, "two": 32, "bit": -1, "sub": 16}, "bindings": [
    ["w", "array<u32>", "({rows}, {g}*6) u32 per 256-column block: 32 nibble words + 16 high-crumb words"],
    ["scales", "array<u32>", "({rows}, {g}/8*5) u32 per block: f16 d, 16 int8 sc"]]},
} %}

{#- The shared nibble/byte -> f32 helpers (exact; see the header). -#}
{% macro _bits_fns() %}
const DQ_MAGIC: u32 = 0x4B000000u;  // the bits of 2^23: OR-ing q < 2^23 into the mantissa gives 2^23 + q

// nibbles 4s .. 4s+3 of word v (s = 0: columns 0..3, s = 1: columns 4..7) minus `off`
fn dq_nib4(v: u32, s: u32, off: f32) -> vec4<f32> {
  let q = (vec4<u32>(v) >> (vec4<u32>(0u, 4u, 8u, 12u) + 16u * s)) & vec4<u32>(15u);
  return bitcast<vec4<f32>>(q | vec4<u32>(DQ_MAGIC)) - vec4<f32>(8388608.0 + off);
}

// the 4 int8 of word v: v ^ 0x80808080 turns each int8 q into the byte q + 128 (0..255)
fn dq_byte4(v: u32) -> vec4<f32> {
  let q = (vec4<u32>(v ^ 0x80808080u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
  return bitcast<vec4<f32>>(q | vec4<u32>(DQ_MAGIC)) - vec4<f32>(8388736.0);  // 2^23 + 128
}

// f16 element i of the u32 word array `scales`
fn dq_scale(i: u32) -> f32 {
  let v = unpack2x16float(scales[i >> 1u]);
  return select(v.x, v.y, (i & 1u) == 1u);
}
{% endmacro %}

{#- q5, q5a and the K formats: one generic form driven by the table's "kq" entry. A chunk of 8
    columns never straddles a sub-block, so its weights are w = a * q + b with one (a, b) per chunk:
    q the integer code with its offset already subtracted (exact in f32), a and b computed in
    gguf.quants.dequantize's order (q4k: a = d * sc, b = -(dmin * mn)). -#}
{% macro _kq_fns(fmt, cols, k) %}
{% set cpb = k["e"] // 8 %}
const DQ_NB: u32 = {{ (cols + k["e"] - 1) // k["e"] }}u;  // {{ k["e"] }}-column blocks per row (K formats: GGUF rows are whole blocks)

// the 4 fields of `bits` bits of word v at fields 4s .. 4s+3
fn dq_fields(v: u32, s: u32, bits: u32) -> vec4<u32> {
  return (vec4<u32>(v) >> ((vec4<u32>(0u, 1u, 2u, 3u) + 4u * s) * bits)) & vec4<u32>((1u << bits) - 1u);
}

// byte i of block blk's 16 scale bytes (K formats: scales words 1..4 of the block)
fn dq_sbyte(blk: u32, i: u32) -> u32 {
  return (scales[blk * 5u + 1u + i / 4u] >> (8u * (i % 4u))) & 255u;
}

// codes of chunk c8 of `row` (columns 8 c8 .. 8 c8 + 7), offset subtracted, and the chunk's (a, b)
struct DqChunk {
  q0: vec4<f32>,
  q1: vec4<f32>,
  ab: vec2<f32>,
}

fn dq_chunk(row: u32, c8: u32) -> DqChunk {
  let blk = row * DQ_NB + c8 / {{ cpb }}u;
  let kk = c8 % {{ cpb }}u;  // chunk within the block
  let base = blk * {{ k["words"] }}u;
{% for s in (0, 1) %}
{% if k["two"] >= 0 %}
  let two{{ s }} = dq_fields(w[base + {{ k["two"] }}u + kk / 2u] >> (16u * (kk % 2u)), {{ s }}u, 2u);
{% endif %}
{% if k["bit"] >= 0 %}
  let bit{{ s }} = dq_fields(w[base + {{ k["bit"] }}u + kk / 4u] >> (8u * (kk % 4u)), {{ s }}u, 1u);
{% endif %}
{% if k["nib"] >= 0 %}
  let nib{{ s }} = dq_fields(w[base + {{ k["nib"] }}u + kk], {{ s }}u, 4u);
{% endif %}
{% if fmt in ("q5", "q5a", "q5k") %}
  let c{{ s }} = vec4<f32>(nib{{ s }} | (bit{{ s }} << vec4<u32>(4u))){{ " - 16.0" if fmt == "q5" }};
{% elif fmt == "q6k" %}
  let c{{ s }} = vec4<f32>(nib{{ s }} | (two{{ s }} << vec4<u32>(4u))) - 32.0;
{% elif fmt == "q3k" %}
  let c{{ s }} = vec4<f32>(two{{ s }}) - 4.0 * vec4<f32>(vec4<u32>(1u) - bit{{ s }});  // hmask bit 0: q - 4
{% elif fmt == "q4k" %}
  let c{{ s }} = vec4<f32>(nib{{ s }});
{% else %}
  let c{{ s }} = vec4<f32>(two{{ s }});
{% endif %}
{% endfor %}
{% if k["sub"] %}
  let j = kk / {{ k["sub"] // 8 }}u;  // sub-block
  let d = unpack2x16float(scales[blk * 5u]);  // (d, dmin)
{% endif %}
{% if fmt == "q5" %}
  let sw = unpack2x16float(scales[blk / 2u]);
  let ab = vec2<f32>(select(sw.x, sw.y, (blk & 1u) == 1u), 0.0);
{% elif fmt == "q5a" %}
  let ab = unpack2x16float(scales[blk]);  // (d, m)
{% elif fmt in ("q4k", "q5k") %}
  let ab = vec2<f32>(d.x * f32(dq_sbyte(blk, j)), -(d.y * f32(dq_sbyte(blk, 8u + j))));
{% elif fmt == "q2k" %}
  let sm = dq_sbyte(blk, j);
  let ab = vec2<f32>(d.x * f32(sm & 15u), -(d.y * f32(sm >> 4u)));
{% elif fmt == "q3k" %}
  let ab = vec2<f32>(d.x * (f32(dq_sbyte(blk, j)) - 32.0), 0.0);
{% else %}
  let ab = vec2<f32>(d.x * f32(bitcast<i32>(dq_sbyte(blk, j) << 24u) >> 24u), 0.0);  // int8 scale
{% endif %}
  return DqChunk(c0, c1, ab);
}

fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let c = dq_chunk(row, c8);
  return mat2x4<f32>(c.ab.x * c.q0 + c.ab.y, c.ab.x * c.q1 + c.ab.y);
}

// block b = chunk b of the row: sum (a q + b) x = a * sum(q x) + b * sum(x)
fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 2>) -> f32 {
  let c = dq_chunk(row, b);
  return c.ab.x * (dot(c.q0, xb[0]) + dot(c.q1, xb[1])) + c.ab.y * dot(xb[0] + xb[1], vec4<f32>(1.0));
}
{% endmacro %}

{#- The WGSL constants and functions of format `fmt` for (., cols) weights (see the header). -#}
{% macro fns(fmt, cols) %}
{% set f = FORMATS[fmt] %}
{% set vec = cols % f["vec_cols"] == 0 %}
const DQ_COLS: u32 = {{ cols }}u;  // weight row length (in_features)
const DQ_G: u32 = {{ (cols + 31) // 32 }}u;  // 32-column groups per row
const DQ_BLOCK: u32 = {{ f["block"] }}u;  // columns per dq_dot block
const DQ_BV: u32 = {{ f["block"] // 4 }}u;  // vec4 of x per block
{% if fmt in ("q8", "q4", "q4a") %}
{{ _bits_fns() }}
{% endif %}
{% if "kq" in f %}
{{ _kq_fns(fmt, cols, f["kq"]) }}
{% endif %}
{% if fmt == "q4" %}
// q4: w[row * G + g] holds group g's 32 nibbles (q + 8); scale f16
fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let v = w[row * DQ_G + c8 / 4u][c8 % 4u];
  let s = dq_scale(row * DQ_G + c8 / 4u);
  return mat2x4<f32>(dq_nib4(v, 0u, 8.0) * s, dq_nib4(v, 1u, 8.0) * s);
}

// block b = word b of the row (columns 8b .. 8b+7), in group b / 4
fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 2>) -> f32 {
  let i = row * DQ_G + b / 4u;
  let v = w[i][b % 4u];
  return dq_scale(i) * (dot(dq_nib4(v, 0u, 8.0), xb[0]) + dot(dq_nib4(v, 1u, 8.0), xb[1]));
}
{% elif fmt == "q4a" %}
// q4a: nibbles q (0..15), per group (scale, lo) in one u32: w = scale * q + lo
fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let v = w[row * DQ_G + c8 / 4u][c8 % 4u];
  let sl = unpack2x16float(scales[row * DQ_G + c8 / 4u]);
  return mat2x4<f32>(dq_nib4(v, 0u, 0.0) * sl.x + sl.y, dq_nib4(v, 1u, 0.0) * sl.x + sl.y);
}

// sum (s q + lo) x = s * sum(q x) + lo * sum(x); block b = word b of the row
fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 2>) -> f32 {
  let i = row * DQ_G + b / 4u;
  let v = w[i][b % 4u];
  let sl = unpack2x16float(scales[i]);
  return sl.x * (dot(dq_nib4(v, 0u, 0.0), xb[0]) + dot(dq_nib4(v, 1u, 0.0), xb[1])) + sl.y * dot(xb[0] + xb[1], vec4<f32>(1.0));
}
{% elif fmt == "q8" %}
// q8: group g is words 8g .. 8g+7 of the row = w[2 (row * G + g)] and the next vec4; scale f16
fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let v = w[(row * DQ_G + c8 / 4u) * 2u + (c8 % 4u) / 2u];
  let h = (c8 % 2u) * 2u;  // the chunk's first word within v
  let s = dq_scale(row * DQ_G + c8 / 4u);
  return mat2x4<f32>(dq_byte4(v[h]) * s, dq_byte4(v[h + 1u]) * s);
}

// block b = vec4 b of the row (columns 16b .. 16b+15: half of group b / 2)
fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 4>) -> f32 {
  let v = w[row * DQ_G * 2u + b];
  let d = dot(dq_byte4(v.x), xb[0]) + dot(dq_byte4(v.y), xb[1]) + dot(dq_byte4(v.z), xb[2]) + dot(dq_byte4(v.w), xb[3]);
  return dq_scale(row * DQ_G + b / 2u) * d;
}
{% elif fmt == "f16" and vec %}
// f16, rows 16-byte aligned: w[row * COLS/8 + c8] holds 8 halves
fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let v = w[row * (DQ_COLS / 8u) + c8];
  return mat2x4<f32>(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
                     vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}

fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 2>) -> f32 {
  let m = dq8(row, b);
  return dot(m[0], xb[0]) + dot(m[1], xb[1]);
}
{% elif fmt == "f16" %}
// f16, unaligned rows: element i of the (rows, COLS) halves is half i % 2 of word i / 2
fn dq_half(i: u32) -> f32 {
  let v = unpack2x16float(w[i >> 1u]);
  return select(v.x, v.y, (i & 1u) == 1u);
}

fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let i = row * DQ_COLS + 8u * c8;
  return mat2x4<f32>(vec4<f32>(dq_half(i), dq_half(i + 1u), dq_half(i + 2u), dq_half(i + 3u)),
                     vec4<f32>(dq_half(i + 4u), dq_half(i + 5u), dq_half(i + 6u), dq_half(i + 7u)));
}

fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 2>) -> f32 {
  let m = dq8(row, b);
  return dot(m[0], xb[0]) + dot(m[1], xb[1]);
}
{% elif fmt == "f32" and vec %}
// f32, rows 16-byte aligned: w[row * COLS/4 + c4] holds 4 weights
fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let i = row * (DQ_COLS / 4u) + 2u * c8;
  return mat2x4<f32>(w[i], w[i + 1u]);
}

fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 1>) -> f32 {
  return dot(w[row * (DQ_COLS / 4u) + b], xb[0]);
}
{% elif fmt == "f32" %}
// f32, unaligned rows: scalar loads
fn dq4(i: u32) -> vec4<f32> {
  return vec4<f32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
}

fn dq8(row: u32, c8: u32) -> mat2x4<f32> {
  let i = row * DQ_COLS + 8u * c8;
  return mat2x4<f32>(dq4(i), dq4(i + 4u));
}

fn dq_dot(row: u32, b: u32, xb: array<vec4<f32>, 1>) -> f32 {
  return dot(dq4(row * DQ_COLS + 4u * b), xb[0]);
}
{% endif %}
{% endmacro %}

{#- ---- The CPU-class forms of the first five formats ----------------------------------------------
    matmul.wgsl (MatmulKey: paths "quant", "f16vec", "f32vec", "scalar", "idot") and embedding.wgsl
    read these formats through the macros below, which emit exactly the text those templates
    always did: the cpu program sets (f32, f16, idot) must stay byte-identical. A new format needs
    none of this: those templates read it through dq8 (path "dq8"), like the GGUF block formats.
    Each macro's output ends its own last line; call it as `{{ dq.m(...) }}{# ... #}`. -#}

{#- matmul.wgsl's helpers: scale_at / scale_lo_at (paths quant and idot), w_at (path scalar). -#}
{% macro mm_fns(fmt, path) %}
{% if fmt in ("q4", "q8") %}
{{ c.half_fn("scale_at", "scales") }}
{% elif fmt == "q4a" %}
// (scale, lo) of group i: w = scale * q + lo
fn scale_lo_at(i: u32) -> vec2<f32> {
  return unpack2x16float(scales[i]);
}
{% elif path == "scalar" %}
{% if fmt == "f16" %}
{{ c.half_fn("w_at", "w") }}
{% else %}
fn w_at(i: u32) -> f32 {
  return w[i];
}
{% endif %}
{% endif %}
{% endmacro %}

{#- matmul.wgsl path "quant": group g of weight row wr{j} as s{j} (and lo{j}: w = s q + lo) and the
    8 vectors w{j}_0 .. w{j}_7 of its q (the scale is applied after the dot product). -#}
{% macro mm_group(fmt, j) %}
{% if fmt == "q4a" %}
    let sl{{ j }} = scale_lo_at(wr{{ j }} * G + g);
    let s{{ j }} = sl{{ j }}.x;
    let lo{{ j }} = sl{{ j }}.y;
{% else %}
    let s{{ j }} = scale_at(wr{{ j }} * G + g);
{% endif %}
{% if fmt in ("q4", "q4a") %}
    let wv{{ j }} = w[wr{{ j }} * G + g];  // 4 words = 32 nibbles
{% for k in range(4) %}
    let w{{ j }}_{{ 2 * k }} = vec4<f32>((vec4<u32>(wv{{ j }}[{{ k }}]) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)){{ " - 8.0" if fmt == "q4" }};
    let w{{ j }}_{{ 2 * k + 1 }} = vec4<f32>((vec4<u32>(wv{{ j }}[{{ k }}]) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)){{ " - 8.0" if fmt == "q4" }};
{% endfor %}
{% else %}
    let wa{{ j }} = w[(wr{{ j }} * G + g) * 2u];  // 8 words = 32 int8
    let wb{{ j }} = w[(wr{{ j }} * G + g) * 2u + 1u];
{% for k in range(8) %}
    let w{{ j }}_{{ k }} = vec4<f32>((vec4<i32>(bitcast<i32>({{ "wa" if k < 4 else "wb" }}{{ j }}[{{ k % 4 }}])) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
{% endfor %}
{% endif %}
{% endmacro %}

{#- matmul.wgsl paths "f16vec" (8 columns at chunk k) and "f32vec" (4 columns): row wr{j}'s
    weight vectors w{j}_0 (, w{j}_1). -#}
{% macro mm_vec(fmt, j) %}
{% if fmt == "f16" %}
    let wv{{ j }} = w[wr{{ j }} * (COLS / 8u) + k];  // 8 halves
    let w{{ j }}_0 = vec4<f32>(unpack2x16float(wv{{ j }}.x), unpack2x16float(wv{{ j }}.y));
    let w{{ j }}_1 = vec4<f32>(unpack2x16float(wv{{ j }}.z), unpack2x16float(wv{{ j }}.w));
{% else %}
    let w{{ j }}_0 = w[wr{{ j }} * (COLS / 4u) + k];
{% endif %}
{% endmacro %}

{#- embedding.wgsl: its helpers, then the body of w_at(r, col) (one weight of table row r). -#}
{% macro emb_fns(fmt) %}
{% if fmt in ("q4", "q8", "f16") %}
{{ c.half_fn("half_at", "scales" if fmt != "f16" else "w") }}
{% endif %}
{% endmacro %}

{% macro emb_w_at(fmt) %}
{% if fmt == "q4a" %}
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
{% endmacro %}
