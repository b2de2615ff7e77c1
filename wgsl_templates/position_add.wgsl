{% import "_common.wgsl" as c with context %}
{{ c.header("x = (x + token_type[0]) + position[position_offset + index in row]: an encoder's embedding sum, in place; one invocation per element") }}
{{ c.prelude() }}

const HIDDEN: u32 = {{ hidden }}u;
const POSITIONS: u32 = {{ positions }}u;  // rows of the position table
const POSITION_OFFSET: u32 = {{ position_offset }}u;  // position id of a row's first token

{% call c.column_main("HIDDEN") %}
  // the batch is packed: token t is at index t - offsets[rows[t]] of its row
  let pos = min(POSITION_OFFSET + t - u32(offsets[u32(rows[t])]), POSITIONS - 1u);
  let i = t * HIDDEN + col;
  x[i] = A((f32(x[i]) + token_type[col]) + position[pos * HIDDEN + col]);
{% endcall %}
