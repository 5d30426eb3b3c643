"""Session-wide settings for every test, doctest and notebook pytest runs here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# one numba cache for the whole run, inherited by the processes tests start (notebook
# kernels, subprocesses), so kernels compile once per run rather than once per process
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vstream-numba-cache"))
