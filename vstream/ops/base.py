"""The one interface every physical operator offers the runtime."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError

__all__ = ["MAX_WM", "MIN_WM", "Chunk", "Operator"]

#: the watermark before any event time is known, and at the end of bounded input
MIN_WM = -(2**63)
MAX_WM = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """A micro-batch flowing between operators, tagged with the source split it came from.

    ``split`` is -1 for batches an operator made itself (window results, ...).
    """

    df: pl.DataFrame
    split: int = -1


class Operator:
    """A physical operator.

    The runtime calls :meth:`process` with a batch (or None) that arrived on input
    ``port`` *before* that input's watermark moved to ``watermark``: rows are judged
    against the watermark of the previous call, then the watermark advances. The
    operator returns the batches it emits and its output watermark, which never
    decreases. Stateful operators also return their state from :meth:`snapshot` as
    Arrow tables and take it back in :meth:`restore`.

    What the runtime does with an operator beyond :meth:`process` is declared here, with
    defaults that mean "not this": an operator that is driven by the wall clock sets
    :attr:`ticking`; one that assigns event time to a source's splits sets
    :attr:`assigns_watermark` (and the split methods); one that collects what other
    steps send aside (dead letters, late events) sets :attr:`collects_side`. The
    runtime reads these, never the operator's type.
    """

    n_inputs: int = 1
    #: driven by the wall clock too (processing time, early results): :meth:`tick`
    #: may move its output watermark or make it emit
    ticking: bool = False
    #: assigns event time per source split: the runtime registers the splits of the
    #: source above it (:meth:`register_split`), tells it when one ends
    #: (:meth:`split_ended`) and reads their progress (:meth:`split_watermark`)
    assigns_watermark: bool = False
    #: takes the side output of other steps (:meth:`collect`) and emits it when woken
    #: (:meth:`has_pending`): the dead-letter and late-event branches
    collects_side: bool = False
    #: keeps something per source split by the split's name: the runtime names every
    #: split to it (:meth:`split_named`) before its first batch
    names_splits: bool = False
    #: rows whose event time was already behind the watermark when they arrived
    behind_watermark: int = 0
    #: the newest event time an assigner has seen (the replay clock of the metrics'
    #: event-time lag); -inf until then and for other operators
    max_event_time: int = MIN_WM
    #: the most rows held in state at once (operators whose :meth:`state_rows` counts)
    peak_state_rows: int = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self.side: dict[str, list[pl.DataFrame]] = {}
        self.late_events = 0
        self.done = False
        self._in_wm = [MIN_WM] * self.n_inputs
        self._out_wm = MIN_WM

    @property
    def input_watermark(self) -> int:
        """The minimum of the inputs' watermarks."""
        return min(self._in_wm)

    def port_watermark(self, port: int) -> int:
        """The watermark of input ``port``."""
        return self._in_wm[port]

    def input_watermarks(self) -> list[int]:
        """The watermark of each input, as the operator last saw it (a copy)."""
        return list(self._in_wm)

    def emitted_watermark(self) -> int:
        """The output watermark the operator last returned."""
        return self._out_wm

    def set_watermarks(self, inputs: list[int], output: int) -> None:
        """Put back the watermarks of :meth:`input_watermarks` and
        :meth:`emitted_watermark` (a run restored from a checkpoint)."""
        if len(inputs) != len(self._in_wm):
            msg = f"{self.name}: {len(inputs)} input watermarks for {len(self._in_wm)} inputs"
            raise VStreamError(msg)
        self._in_wm = list(inputs)
        self._out_wm = output

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        out = self.on_batch(port, chunk) if chunk is not None else []
        self._in_wm[port] = max(self._in_wm[port], watermark)
        self._out_wm = max(self._out_wm, self.output_watermark())
        return out, self._out_wm

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        """Handle one batch; the input watermark is still the one from before it."""
        raise NotImplementedError

    def output_watermark(self) -> int:
        return self.input_watermark

    def register_split(
        self, split: int, *, lower: int | None, started: bool, name: str | None = None
    ) -> None:
        """A source split upstream, before the run reads it (event-time assignment):
        every event of it is >= ``lower`` when known; ``started``: read at the same time
        as the others rather than after them; ``name``: its stable name (source step id
        / split name) under which a checkpoint keeps its watermark."""

    def split_named(self, split: int, name: str) -> None:
        """The name of source split ``split`` (an operator with :attr:`names_splits`):
        the source's own name for it, stable from run to run."""

    def split_ended(self, split: int) -> None:
        """A source split upstream has no more data (used by event-time assignment)."""

    def split_watermark(self, split: int) -> int | None:
        """The watermark of a source split (event-time assignment); None when the split
        is unknown or has ended."""
        return None

    def hold_splits(self, held: set[int], *, source: bool = False) -> None:
        """Which source splits upstream are lagging or disconnected (``held``; the others
        are connected and caught up), and whether the source has input waiting that no
        split holds yet (``source``), as the readers reported them on the tick (used by
        event-time assignment: a held split is never idle)."""

    def expect_splits(self) -> None:
        """The source upstream may add splits while it runs (it is unbounded): its splits
        all having ended does not end its input (used by event-time assignment)."""

    def forget_split(self, split: int) -> None:
        """An ended source split upstream leaves the run's state (a retired watched
        file); used by event-time assignment."""

    def collect(self, frames: list[pl.DataFrame]) -> None:
        """Take rows another step sent aside (an operator with :attr:`collects_side`)."""
        msg = f"{self.name}: this step does not collect the side output of other steps"
        raise VStreamError(msg)

    def has_pending(self) -> bool:
        """Whether collected rows wait to be emitted (an operator with
        :attr:`collects_side`)."""
        return False

    def late_counts(self) -> tuple[int, ...] | None:
        """The late events dropped per input, for operators that count them per input
        (joins); None: only the total :attr:`late_events`."""
        return None

    def state_rows(self) -> int | None:
        """The rows held in state now, for operators that count them (joins); None:
        not counted."""
        return None

    def tick(self, now: float) -> bool:
        """Called now and then with the wall clock; True if the output watermark may move."""
        return False

    def emit_side(self, name: str, df: pl.DataFrame) -> None:
        if df.height:
            self.side.setdefault(name, []).append(df)

    def snapshot(self) -> dict[str, pa.Table]:
        """The operator's state as Arrow tables (empty for stateless operators)."""
        return {}

    def restore(self, state: dict[str, pa.Table]) -> None:
        if state:
            msg = f"{self.name}: this operator is stateless but was given state {sorted(state)}"
            raise VStreamError(msg)
