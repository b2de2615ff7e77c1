"""Compiler passes: lower the graph IR to programs of kernel dispatches over planned buffers."""
