"""numba kernels: plain loops over numpy views of Arrow buffers, checked by Python wrappers.

Every kernel has a pure numpy reference in ``REFERENCES`` that the tests compare it to.
"""

from vstream.kernels.event_time import event_time_stats

__all__ = ["event_time_stats"]
