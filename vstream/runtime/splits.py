"""The splits of one source step in a run: index to global id and name, splits that
appear while running (:class:`~vstream.io.base.SplitAdded`), retired splits, and what the
reader last said of them (:class:`~vstream.io.base.ReaderStatus`).

The loop (:mod:`vstream.runtime.executor`) knows a split by a global int; a reader by its
index in the source (the splits listed at open, then one more per ``SplitAdded``); a
checkpoint by its name. This object keeps the three together.

Examples
--------
>>> from vstream.runtime.splits import SourceSplits
>>> from vstream.io.base import ReaderStatus, SplitStatus
>>> sp = SourceSplits("from_kafka(t)", ["t/0", "t/1"], first_id=10)
>>> sp.add(2, "t/2", next_id=12), sp.gid(2), sp.names
((2, 't/2'), 12, {0: 't/0', 1: 't/1', 2: 't/2'})
>>> sp.held(ReaderStatus(splits={1: SplitStatus(caught_up=False, lag=40)}))
{11}
>>> sp.lags(ReaderStatus(splits={1: SplitStatus(caught_up=False, lag=40)}))
{'t/1': 40}
"""

from __future__ import annotations

from collections.abc import Iterable

from vstream.errors import SourceError
from vstream.io.base import ReaderStatus

__all__ = ["SourceSplits", "describe_splits"]


class SourceSplits:
    """The splits of one source step: ``ids`` (index -> global id) and ``names`` (index
    -> unique name), in index order; retired splits leave both."""

    def __init__(self, label: str, names: list[str], *, first_id: int) -> None:
        self.label = label
        self.ids: dict[int, int] = {k: first_id + k for k in range(len(names))}
        self.names: dict[int, str] = dict(enumerate(names))
        #: splits announced so far: the index the next SplitAdded must carry
        self.count = len(names)
        #: indexes the reader retired before the loop saw them end (their end is queued)
        self.retiring: set[int] = set()
        #: what the reader said on the last tick (None: nothing to report)
        self.status: ReaderStatus | None = None

    def gid(self, index: int) -> int:
        """The global id of split ``index``; a SourceError for one the source never
        announced (or retired)."""
        try:
            return self.ids[index]
        except KeyError:
            msg = (
                f"{self.label}: its reader handed out an event of split {index}, which it "
                f"never announced (it has announced {self.count} split(s)) or has retired; "
                "a source announces a split with SplitAdded before its first event"
            )
            raise SourceError(msg) from None

    def add(self, index: int, name: str, *, next_id: int) -> tuple[int, str]:
        """Take a :class:`~vstream.io.base.SplitAdded`: returns its index and its unique
        name (``name#2`` for a name already in use); its global id is ``next_id``."""
        if isinstance(index, bool) or not isinstance(index, int) or index != self.count:
            msg = (
                f"{self.label}: its reader announced split {index!r} ({name!r}), but the next "
                f"split index is {self.count} (the splits at open plus those announced "
                "since): a source numbers the splits it adds one after another"
            )
            raise SourceError(msg)
        if not isinstance(name, str) or not name:
            msg = f"{self.label}: its reader announced split {index} with no name ({name!r})"
            raise SourceError(msg)
        taken = set(self.names.values())
        unique, k = name, 1
        while unique in taken:
            k += 1
            unique = f"{name}#{k}"
        self.count += 1
        self.ids[index] = next_id
        self.names[index] = unique
        return index, unique

    def retire(self, indexes: Iterable[int], ended: set[int]) -> list[int]:
        """Forget the splits ``indexes`` whose end the loop has seen (``ended``: global
        ids); those still to end wait in :attr:`retiring`. Returns the global ids
        forgotten."""
        gone = []
        for k in list(indexes):
            g = self.ids.get(k)
            if g is None:
                continue
            if g not in ended:
                self.retiring.add(k)
                continue
            self.retiring.discard(k)
            del self.ids[k], self.names[k]
            gone.append(g)
        return gone

    def held(self, status: ReaderStatus | None) -> set[int]:
        """Global ids of the splits the status says are lagging or disconnected."""
        if status is None:
            return set()
        if not status.connected:
            return set(self.ids.values())
        return {
            self.ids[k]
            for k, sp in status.splits.items()
            if k in self.ids and not (sp.connected and sp.caught_up)
        }

    def lags(self, status: ReaderStatus | None) -> dict[str, int]:
        """Per split name, the lag the status reports (where it knows one)."""
        if status is None:
            return {}
        return {
            self.names[k]: sp.lag
            for k, sp in status.splits.items()
            if sp.lag is not None and k in self.names
        }


def describe_splits(names: list[str], limit: int = 5) -> str:
    """Split names for a message: ``split 'a'``, ``splits 'a', 'b' and 3 more``."""
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"split{'s' * (len(names) != 1)} {shown}{more}"
