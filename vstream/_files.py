"""Durable file-system steps shared by checkpoints and sinks, and what to say when the
file system refuses one."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

__all__ = ["errno_of", "fsync", "os_problem"]

# Polars and Arrow report an OS error inside their own exception's text
_OS_ERROR = re.compile(r"os error (\d+)")

_HINTS = {
    errno.ENOSPC: "free space on that file system, or use a directory on another one",
    errno.EDQUOT: "free space within your disk quota, or use a directory on another file system",
    errno.EROFS: "the file system is read-only: use a writable directory",
    errno.EACCES: "check the directory's permissions, or use another directory",
    errno.EPERM: "check the directory's permissions, or use another directory",
    errno.EXDEV: (
        "the staging directory and the output are on different mounts (is the output "
        "directory itself a mount point?): write into a subdirectory of the mount instead"
    ),
}


def fsync(path: Path) -> None:
    """Flush a written file's data, or a directory's entries (a rename or a new file in
    it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def errno_of(exc: BaseException) -> int | None:
    """The OS error number behind ``exc``: an OSError's, or the one a Polars or Arrow
    error names in its text ("... (os error 28)")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    m = _OS_ERROR.search(str(exc))
    return int(m.group(1)) if m else None


def os_problem(exc: BaseException, doing: str, directory: Path) -> str:
    """A message for a failed file-system step: what was being done, in which directory,
    why it failed and what to do (``doing`` starts with the step, e.g.
    ``"sink_parquet('out'): cannot write part-000003.parquet"``)."""
    code = errno_of(exc)
    reason = (
        os.strerror(code).lower()
        if code is not None
        else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    )
    hint = _HINTS.get(code, "check that the directory exists and is writable") if code else ""
    detail = f" ({exc})" if code is None else ""
    text = f"{doing} in {str(directory)!r}: {reason}{detail}"
    return f"{text}; {hint}" if hint else text
