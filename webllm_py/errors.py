"""Error types shared by the compiler, the runtimes and the CLI.

Every error names the file (or field) it is about and says what is wrong, so
that the CLI can print it as one line and exit non-zero without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class WebLLMError(Exception):
    """Base class of all webllm-py errors."""


class BuildError(WebLLMError):
    """The compiler could not turn its input into a bundle.

    `path` is the input file at fault (config.json, a .safetensors shard, ...).
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class BundleError(WebLLMError):
    """A bundle on disk is unreadable, incomplete, corrupted or of an unknown format."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class BundleVersionError(BundleError):
    """The bundle's major format version is not one this runtime knows."""


class IntegrityError(BundleError):
    """A bundle file's size or sha256 does not match the manifest."""


class ContextWindowExceededError(WebLLMError, ValueError):
    """A prompt (plus the tokens to generate) does not fit the bundle's context window."""


class DeviceError(WebLLMError):
    """No usable GPU adapter, or a required feature / limit is missing."""


class InputError(WebLLMError, ValueError):
    """A command-line input (an option's value, a text file) cannot be used; `path` names the file if any."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)
