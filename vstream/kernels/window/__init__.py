"""Window kernels: panes (slices) for tumbling and hopping windows, sessions.

- ``slots``: the (pane, key) -> slot table and the pane directory in front of it.
- ``panes``: an event's pane and slot (``pane_slots``), dropping panes past their
  lateness, taking the slots of fired panes.
- ``hopping``: firing hopping windows from block prefix / suffix partials of their panes.
- ``finalize``: a tumbling firing taken and finalized in one pass (``take_final``).
- ``sessions``: session windows, per key a linked list of live sessions.
- ``order``: rows sorted by (key, value); ``bounds``: a batch's event-time range.
"""

from vstream.kernels.window.bounds import time_bounds
from vstream.kernels.window.finalize import (
    FIN_COUNT,
    FIN_FLOAT,
    FIN_INT,
    FIN_MEAN,
    FIN_MINMAX_F,
    FIN_MINMAX_I,
    FIN_U32,
    take_final,
)
from vstream.kernels.window.hopping import fire_hopping, windows_of
from vstream.kernels.window.panes import (
    compact_panes,
    count_below,
    pane_of,
    pane_slots,
    take_panes,
)
from vstream.kernels.window.sessions import (
    session_fire,
    session_live,
    session_order,
    session_update,
)
from vstream.kernels.window.slots import find_slot, rebuild_index, rebuild_table

__all__ = [
    "FIN_COUNT",
    "FIN_FLOAT",
    "FIN_INT",
    "FIN_MEAN",
    "FIN_MINMAX_F",
    "FIN_MINMAX_I",
    "FIN_U32",
    "compact_panes",
    "count_below",
    "find_slot",
    "fire_hopping",
    "pane_of",
    "pane_slots",
    "rebuild_index",
    "rebuild_table",
    "session_fire",
    "session_live",
    "session_order",
    "session_update",
    "take_final",
    "take_panes",
    "time_bounds",
    "windows_of",
]
