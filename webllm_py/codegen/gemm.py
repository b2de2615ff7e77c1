"""GPU-adapter kernel family (being written; see docs/architecture.md)."""
