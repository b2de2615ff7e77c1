"""Graph IR: ops on tensors with symbolic dims, each op with a shape rule and a numpy reference."""

from .graph import Graph, Node, Param, Value, eval_dim
from .ops import OPS, OpDef

__all__ = ["Graph", "Node", "Param", "Value", "eval_dim", "OPS", "OpDef"]
