"""numba kernels: plain loops over numpy views of Arrow buffers, checked by Python wrappers.

- ``event_time``: per-batch event-time statistics for watermarks.
- ``hashing``: the open-addressing table behind the key index.
- ``aggregate``: incremental aggregates over struct-of-arrays state (chunk: fold rows
  into slots; combine: merge two slots).
- ``window``: panes of tumbling and hopping windows (slot lookup, firing with block
  prefix/suffix partials) and session windows (runs, merges, firing).

Every kernel has a numpy or Polars reference in the tests (``tests/test_kernels.py``,
``tests/test_window_kernels.py``) that hypothesis compares it to on random input.
"""

from vstream.kernels.event_time import event_time_stats

__all__ = ["event_time_stats"]
