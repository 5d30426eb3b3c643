"""Keyed window aggregation: the operator around the pane and session kernels.

Config (what the user wrote) lives in :mod:`vstream.plan.windows` and reaches the
operator resolved as a :class:`vstream.plan.windows.WindowSetup`
(``setup``); the rest, one concept a module:

- ``operator``: :class:`WindowOp`, batches in, the watermark, emission, snapshot/restore.
- ``panes``: tumbling and hopping windows over panes; ``sessions``: session windows.
- ``inputs``: a batch's aggregate inputs as the kernels take them.
- ``finalize``: output columns from the state fields of fired windows.
- ``zones``: local wall-clock times of time-zone-aware columns, and back.
"""

from vstream.ops.window.operator import WindowOp
from vstream.ops.window.zones import to_instants, to_local, zone_table

__all__ = ["WindowOp", "to_instants", "to_local", "zone_table"]
