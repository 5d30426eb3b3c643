"""Join operators: symmetric (interval, windowed, regular), as-of, and lookup.

Config (what the user wrote, checked) is a :class:`vstream.plan.joins.JoinSetup`; this
package is the logic the runtime runs: ``base`` (the shell every join shares),
``symmetric``, ``asof`` and ``lookup``; what a checkpoint holds (the key index and the
kept rows, by key id) is a state object of :mod:`vstream.state.join`. Both inputs share one
:class:`~vstream.state.key_index.KeyIndex` (the right side's key columns are read under
the left side's names), so a key has the same id on both sides. A null in a key column
matches nothing (as in Polars); such rows still appear, unmatched, in outer joins.
"""

from vstream.ops.join.asof import AsofJoinOp
from vstream.ops.join.lookup import LookupJoinOp
from vstream.ops.join.symmetric import SymmetricJoinOp

__all__ = ["AsofJoinOp", "LookupJoinOp", "SymmetricJoinOp"]
