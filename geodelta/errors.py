"""One error hierarchy; every message tells the user what to do next.

The CLI prints a `GeoDeltaError` without a traceback and exits non-zero. Anything that is not a
`GeoDeltaError` is a bug and keeps its traceback.

Exit codes of the `geodelta` command (the same for every command):

| code | meaning |
| --- | --- |
| 0 | done: answered ("no change found" included), audit verifies |
| 1 | the audit trail does not verify, or an audit id does not exist (`AuditError`) |
| 2 | bad input: a file, option or setting that cannot be used (`InputError`, `ConfigError`) |
| 3 | the planning model or its server failed (`ModelError`) |
| 4 | an optional dependency is not installed (`MissingDependencyError`) |
| 5 | `ask` asked back instead of answering (a clarification: answer it with `--thread`) |
| 130 | interrupted |
"""

from __future__ import annotations

CLARIFICATION_EXIT = 5  # `ask` asked a question back: not an error, but not an answer either


class GeoDeltaError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 2


class InputError(GeoDeltaError):
    """A file or argument the user gave cannot be used (missing, corrupt, incompatible)."""


class ToolInputError(InputError):
    """A tool was called with arguments it refuses (bad value, path outside the allowed roots)."""


class ModelError(GeoDeltaError):
    """The planning / captioning model failed: server down, timeout, unusable replies."""

    exit_code = 3


class ConfigError(GeoDeltaError):
    """A setting is invalid or a required optional part is not installed."""


class MissingDependencyError(ConfigError):
    """An optional part (an extra such as `[dask]`) is not installed; the message names the extra."""

    exit_code = 4


def missing_dependency(module: str, extra: str, what: str) -> MissingDependencyError:
    """The one message for a lazily imported optional module that is absent."""
    return MissingDependencyError(
        f"{what} needs the Python package {module!r}, which is not installed: pip install 'geodelta[{extra}]'"
    )


class AuditError(GeoDeltaError):
    """The audit trail does not verify, or an audit id does not exist."""

    exit_code = 1
