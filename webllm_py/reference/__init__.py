"""The numpy reference backend: interprets the bundle's graph on its dequantized weights."""

from .interpreter import ReferenceModel, run_graph

__all__ = ["ReferenceModel", "run_graph"]
