"""The bundle: a static folder with manifest.json, weight shards and tokenizer files."""

from .manifest import FORMAT, FORMAT_VERSION, check_version
from .reader import Bundle
from .writer import write_bundle

__all__ = ["Bundle", "FORMAT", "FORMAT_VERSION", "check_version", "write_bundle"]
