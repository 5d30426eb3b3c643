"""Durable file-system steps shared by checkpoints and sinks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync"]


def fsync(path: Path) -> None:
    """Flush a written file's data, or a directory's entries (a rename or a new file in
    it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
