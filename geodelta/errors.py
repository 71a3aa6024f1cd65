"""One error hierarchy; every message tells the user what to do next.

The CLI prints a `GeoDeltaError` without a traceback and exits non-zero. Anything that is not a
`GeoDeltaError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class GeoDeltaError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 2


class InputError(GeoDeltaError):
    """A file or argument the user gave cannot be used (missing, corrupt, incompatible)."""


class ToolInputError(InputError):
    """A tool was called with arguments it refuses (bad value, path outside the allowed roots)."""


class ModelError(GeoDeltaError):
    """The planning / captioning model failed: server down, timeout, unusable replies."""


class ConfigError(GeoDeltaError):
    """A setting is invalid or a required optional part is not installed."""


class AuditError(GeoDeltaError):
    """The audit trail does not verify, or an audit id does not exist."""

    exit_code = 1
