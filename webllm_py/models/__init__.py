"""Model importers: sources (HF folder, GGUF), the architecture registry and the decoder graph."""

from .config import DecoderConfig
from .registry import ARCHITECTURES, parse_config
from .source import HFFolderSource, ModelSource

__all__ = ["ARCHITECTURES", "DecoderConfig", "HFFolderSource", "ModelSource", "parse_config"]
