"""Why a model version failed to load, as a short fixed class and a full reason.

The class (``config_error``, ``artifact_error``...) is safe to show anyone: it names the
kind of failure, never its text. The full reason (which may hold paths and whatever a
model's code put in its exception) goes to the log and to admin callers only.
"""

from __future__ import annotations

from typing import Final

from inferd.errors import ConfigError, InferdError, InvalidArgument, ModelLoadError

#: Exception type -> failure class, first match wins; anything else is ``artifact_error``.
LOAD_FAILURES: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (ConfigError, "config_error"),
    (InvalidArgument, "repository_error"),
    (ImportError, "import_error"),
    (SyntaxError, "import_error"),
)
ARTIFACT_ERROR: Final = "artifact_error"
#: Classes whose reason is the user's own configuration: logged without a traceback.
CONFIG_CLASSES: Final = frozenset({"config_error", "repository_error"})


class WarmupFailed(ModelLoadError):
    """The warm-up request failed: the model loaded but cannot answer."""

    kind = "warmup_error"


def classify(exc: BaseException) -> tuple[str, str]:
    """(failure class, full reason on one line) for an exception raised while loading."""
    reason = exc.message if isinstance(exc, InferdError) else f"{type(exc).__name__}: {exc}"
    kind = getattr(exc, "kind", None)
    if not isinstance(kind, str):
        kind = next((k for t, k in LOAD_FAILURES if isinstance(exc, t)), ARTIFACT_ERROR)
    return kind, one_line(reason)


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def public_reason(kind: str) -> str:
    return f"load_failed: {kind}"
