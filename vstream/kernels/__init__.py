"""numba kernels: plain loops over numpy views of Arrow buffers, checked by Python wrappers.

- ``event_time``: per-batch event-time statistics for watermarks.
- ``hashing``: the open-addressing table behind the key index.
- ``keyhash``: the stable key hash (the same 64 bits for a key in every process, run and
  Polars version: its golden values in ``tests/kernels/test_keyhash.py`` are a
  compatibility contract of checkpoints), key groups (``DEFAULT_KEY_GROUPS``) and their ranges.
- ``aggregate``: incremental aggregates over struct-of-arrays state (chunk: fold rows
  into slots; combine: merge two slots).
- ``window/``: the slot table, panes of tumbling and hopping windows (firing with block
  prefix/suffix partials), session windows (runs, merges, firing), fused finalize.
- ``join``: probes and eviction of the stream-stream and lookup joins.
- ``utf8``: UTF-8 validation of string buffers, one verdict per row (strict, as Python's
  decoder; damaged offsets mark a row invalid rather than reading outside the buffer).

Kernels are decorated with ``_jit.njit``: numba is imported, and the kernels made numba
dispatchers, when the first kernel runs, so ``import vstream`` does not pay for numba.

Every kernel has a numpy or Polars reference in the tests (``tests/kernels/`` and
``tests/io/test_untrusted_input.py``) that hypothesis compares it to on random input.
"""

from vstream.kernels.event_time import event_time_stats

__all__ = ["event_time_stats"]
