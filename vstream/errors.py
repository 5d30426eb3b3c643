"""The vstream error hierarchy.

Every error vstream raises on purpose derives from :class:`VStreamError`, so a
user can catch them all with one ``except``. Messages name the step, the column
or the expression at fault and say what would fix it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "ColumnNotFoundError",
    "DurationError",
    "EventTimeError",
    "ExpressionError",
    "MissingDependencyError",
    "PipelineError",
    "PlanError",
    "SchemaError",
    "SinkError",
    "SourceError",
    "UnboundedError",
    "VStreamError",
]


class VStreamError(Exception):
    """Base class of every error raised by vstream."""


class PipelineError(VStreamError):
    """The pipeline is wrong; raised when it is built, before any event is read."""


class PlanError(PipelineError):
    """A plan cannot be serialised (``Stream.serialize``), or a payload cannot be loaded
    as a plan (``Stream.deserialize``)."""


class ColumnNotFoundError(PipelineError):
    """A step names a column its input does not have."""


class SchemaError(PipelineError):
    """Column types do not fit what a step needs (e.g. concat of different schemas)."""


class ExpressionError(PipelineError):
    """An expression cannot be used where it stands (not row-wise, wrong type, ...)."""


class DurationError(PipelineError):
    """A duration cannot be parsed or does not fit the event-time column."""


class EventTimeError(PipelineError):
    """A step needs event time (``with_watermark``) and the stream has none, or it is misused."""


class UnboundedError(PipelineError):
    """A terminal call that needs the end of the input was asked of an unbounded stream."""


class SourceError(VStreamError):
    """A source cannot be opened or read (missing file, unreadable data, ...)."""


class SinkError(VStreamError):
    """A sink cannot write its output: the directory is claimed by another run, not empty
    for ``mode="error"``, full, or not writable."""


class CheckpointError(VStreamError):
    """A checkpoint cannot be written or used: damaged, from another pipeline, or a
    source that cannot be replayed from it."""


class MissingDependencyError(VStreamError, ImportError):
    """A feature needs a package that is not installed; the message names the extra that
    installs it (``pip install "vstream[notebook]"``, ``"vstream[metrics]"``). Also an
    ``ImportError``, so ``except ImportError`` catches it as it would the import itself."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped, or a finished run was asked to run again."""
