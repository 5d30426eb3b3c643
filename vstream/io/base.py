"""What a source is to the runtime: splits, a schema, and a pull-based reader."""

from __future__ import annotations

import glob
import itertools
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from vstream.errors import SourceError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "Data",
    "Reader",
    "ReaderStatus",
    "Source",
    "SourceEvent",
    "SplitAdded",
    "SplitEnd",
    "SplitStatus",
    "SplitPosition",
    "SyncReader",
    "ThreadedReader",
    "buffered_reader",
    "dead_letter_batch",
    "row_position",
    "sample_live",
    "split_root",
    "unique_split_names",
    "DEAD_LETTER_SCHEMA",
]

DEAD_LETTER_SCHEMA = pa.schema(
    [("record", pa.string()), ("reason", pa.string()), ("step", pa.string())]
)


def dead_letter_batch(records: list[str], reasons: list[str], step: str) -> pa.RecordBatch:
    """A dead-letter batch: the raw records as text, why each was refused, and by which step."""
    return pa.record_batch(
        [
            pa.array(records, pa.string()),
            pa.array(reasons, pa.string()),
            pa.array([step] * len(records), pa.string()),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )


@dataclass(frozen=True, slots=True)
class Data:
    """A micro-batch read from split ``split``, with the dead letters of its rows.

    ``position`` is where the split stands right after this event: a JSON value (an int
    or a list of ints, the source's own format), different for every event of a split,
    that ``Source.open`` takes back in a :class:`SplitPosition` to go on after it.
    """

    split: int
    batch: pa.RecordBatch | None
    position: object
    dead: pa.RecordBatch | None = None


@dataclass(frozen=True, slots=True)
class SplitEnd:
    """Split ``split`` has no more data."""

    split: int


@dataclass(frozen=True, slots=True)
class SplitAdded:
    """A split that appeared while the source runs (a file written into a watched
    directory, a partition added to a Kafka topic), named ``name``.

    ``split`` is its index: the next free one, i.e. the number of splits the reader was
    opened with plus the number of ``SplitAdded`` events before this one. The reader
    hands it out before any :class:`Data` of that split; a checkpoint then keeps the
    split's position by ``name``, and on restart :meth:`Source.split_names` lists it
    among the splits present from the start.
    """

    split: int
    name: str


SourceEvent = Data | SplitEnd | SplitAdded


@dataclass(frozen=True, slots=True)
class SplitStatus:
    """What a reader knows of one split beyond its events.

    ``connected``: its broker or file system answers. ``caught_up``: nothing is known to
    be waiting (a Kafka partition at its high watermark, no unread file). A split that is
    lagging or disconnected is never idle: it holds the source's watermark however long
    it has had no data (DESIGN.md, "Watermark"). ``lag``: how far behind its end it is
    (Kafka: the high watermark minus the position), None when unknown.
    """

    connected: bool = True
    caught_up: bool = True
    lag: int | None = None


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """What a running reader reports on the metrics tick (:meth:`Reader.status`).

    ``connected``: the reader reaches its broker; ``errors``: transient errors it has
    seen and retried since it opened (broker outages, timeouts); ``splits``: per split
    index, its :class:`SplitStatus` (a split missing here is connected and caught up);
    ``caught_up``: False while input is known to wait that no announced split holds yet
    (a watched directory's files still being written, or beyond ``max_files_per_batch``):
    the source then holds its watermark as a lagging split does, even with no split open.
    """

    connected: bool = True
    errors: int = 0
    splits: Mapping[int, SplitStatus] = field(default_factory=dict)
    caught_up: bool = True


@dataclass(frozen=True, slots=True)
class SplitPosition:
    """Where a split stood in a checkpoint: ``position`` as carried by the last Data the
    operators consumed from it (None: nothing consumed yet), and whether it had ended.

    ``Source.open`` takes a mapping of split index to ``SplitPosition`` and gives the
    events an uninterrupted read gives after that point: same batches, same positions,
    same dead letters, same split ends.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from vstream.io.base import SplitPosition
    >>> from vstream.io.memory import ArrowSource
    >>> src = ArrowSource(pa.table({"a": [1, 2, 3, 4, 5]}), batch_size=2, bounded=None)
    >>> reader = src.open({0: SplitPosition(2)})  # the first batch was consumed
    >>> event = reader.poll(1.0)
    >>> event.batch["a"].to_pylist(), event.position
    ([3, 4], 4)
    >>> reader = src.open({0: SplitPosition(5, ended=True)})  # the split had ended
    >>> reader.poll(1.0) is None, reader.exhausted
    (True, True)
    """

    position: object | None
    ended: bool = False


class Reader(ABC):
    """A running source: hands out events one at a time; never blocks longer than asked."""

    @abstractmethod
    def poll(self, timeout: float) -> SourceEvent | None:
        """The next event, or None if none came within ``timeout`` seconds."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True once every event has been handed out."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads and files; pending events are dropped."""

    def align(self, column: str, drift: int) -> None:  # noqa: B027 - optional hook
        """A no-op here. A reader that holds several splits may release their batches in
        event-time order (``column``, integer or timestamp) up to ``drift`` (the
        watermark's out-of-orderness, in the column's unit), so a split its client
        delivers ahead does not keep the others' windows open. Called once, right after
        ``open``, when the run's watermark reads ``column`` unchanged from this source.
        """

    def status(self) -> ReaderStatus | None:
        """Connection, transient errors and per-split lag, or None: nothing to report
        (every split connected and caught up once its events are handed out). Called in
        the run's thread on the metrics tick; must be cheap and must not block.
        """
        return None

    def retired_splits(self) -> list[int]:
        """Indexes of ended splits that may leave the run's state and its checkpoints (a
        watched file older than ``max_file_age``), each returned once; ``[]`` here. The
        runtime forgets their positions and watermarks, so a checkpoint stays bounded; the
        source must never hand them out again (a restart does not list them). Called in
        the run's thread on the metrics tick; must be cheap and must not block.
        """
        return []


class SyncReader(Reader):
    """Reads in the caller's thread: for in-memory data that never blocks."""

    def __init__(self, events: Iterator[SourceEvent]) -> None:
        self._events = events
        self._done = False

    def poll(self, timeout: float) -> SourceEvent | None:
        if self._done:
            return None
        try:
            return next(self._events)
        except StopIteration:
            self._done = True
            return None

    @property
    def exhausted(self) -> bool:
        return self._done


_END = object()


class ThreadedReader(Reader):
    """Runs ``produce`` in a daemon thread feeding a bounded queue.

    The bounded queue is the backpressure: when the pipeline is slow the producer blocks
    on ``put`` and stops consuming its input, so memory stays flat.

    ``on_idle`` is called by ``poll`` (in the consumer's thread) when nothing arrived in
    time; a source uses it to flush a partial batch while its producer is blocked.
    """

    def __init__(
        self,
        produce: Callable[[Callable[[SourceEvent], bool]], None],
        *,
        maxsize: int = 4,
        on_idle: Callable[[], SourceEvent | None] | None = None,
        idle_interval: float = 0.01,
        name: str = "vstream-source",
    ) -> None:
        self._idle_interval = idle_interval
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._done = False
        self._on_idle = on_idle
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[Callable[[SourceEvent], bool]], None]) -> None:
        try:
            produce(self._put)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._error = exc
        finally:
            self._put(_END)

    def poll(self, timeout: float) -> SourceEvent | None:
        if self._done:
            return None
        deadline = time.monotonic() + timeout
        while True:
            wait = deadline - time.monotonic()
            if self._on_idle is not None:
                wait = min(wait, self._idle_interval)
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                if self._on_idle is not None:
                    event = self._on_idle()
                    if event is not None:
                        return event
                if time.monotonic() >= deadline:
                    return None
                continue
            if item is _END:
                self._done = True
                if self._error is not None:
                    raise self._error
                return None
            return item  # type: ignore[return-value]

    @property
    def exhausted(self) -> bool:
        return self._done

    def queue_empty(self) -> bool:
        """Whether no event waits in the queue (reliable while the producer holds its lock)."""
        return self._queue.empty()

    def close(self) -> None:
        self._stop.set()


class Source(ABC):
    """A pull-based source of Arrow record batches, made of one or more named splits.

    The contract a source keeps with the runtime:

    - **Named splits.** A split (a file, a Kafka topic-partition, a generator) is the
      unit of event-time tracking (each has its own watermark) and of replay.
      :meth:`splits` lists them before running, in split order; :meth:`split_names`
      names them stably across runs (a file by its path relative to
      :attr:`split_root`): a checkpoint keys their positions by these names, so a file
      added to a source directory is a new split, not a shifted one.
    - **Positions are JSON values** (an int, a list of ints: the source's own format),
      carried by every :class:`Data` event: where its split stands right after it.
    - **open(resume, columns, splits)** starts a run and returns one :class:`Reader`
      over the splits (``splits``: only those split indexes). ``resume`` maps a split's
      index to the :class:`SplitPosition` a checkpoint held for it (see
      :meth:`resume_points`); ``columns`` are the columns the run reads (None: all): a
      source may read only those (Parquet does) and check only those (UTF-8), and must
      still hand out batches of its schema's other columns or of these alone, cut at the
      same rows at the same positions. A replayable source object may be opened again
      for another run; each ``open`` takes its own ``columns``, so two runs of one
      source do not see each other's. :meth:`open_split` opens one split by name, from
      a position: what a partition that owns some of a source's splits calls.
    - **Splits that appear while running** (a file written into a watched directory, a
      partition added to a Kafka topic) are announced by the reader with a
      :class:`SplitAdded` event before their first :class:`Data`; the reader's
      :meth:`Reader.status` says which splits are connected and caught up.
    - **Hooks.** :meth:`on_checkpoint_complete` is called once a checkpoint is durable
      (a broker source commits its offsets there).

    Examples
    --------
    A source of two splits of letters, whose position counts the letters read:

    >>> import pyarrow as pa
    >>> from vstream.io.base import Data, Source, SplitEnd, SplitPosition, SyncReader
    >>> class Letters(Source):
    ...     label = "letters"
    ...     replayable = True
    ...     data = {"ab": ["a", "b"], "cde": ["c", "d", "e"]}
    ...
    ...     def splits(self):
    ...         return list(self.data)
    ...
    ...     def schema(self):
    ...         return pa.schema([("letter", pa.string())])
    ...
    ...     def open(self, resume=None, *, columns=None, splits=None):
    ...         def events():
    ...             for i, after in self.resume_points(resume, splits).items():
    ...                 letters = self.data[self.splits()[i]]
    ...                 for k in range(after or 0, len(letters)):
    ...                     batch = pa.record_batch({"letter": [letters[k]]})
    ...                     yield Data(i, batch, k + 1)
    ...                 yield SplitEnd(i)
    ...
    ...         return SyncReader(events())
    >>> src = Letters()
    >>> src.split_names()
    ['ab', 'cde']
    >>> reader = src.open({0: SplitPosition(2, ended=True), 1: SplitPosition(1)})
    >>> while (event := reader.poll(1.0)) is not None:
    ...     print(event.split, event.batch["letter"][0] if isinstance(event, Data) else "end")
    1 d
    1 e
    1 end
    >>> reader = src.open_split("cde", SplitPosition(2))  # one split, after its 2nd letter
    >>> [e for e in iter(lambda: reader.poll(1.0), None)]
    [Data(split=1, batch=..., position=3, dead=None), SplitEnd(split=1)]
    >>> src.on_checkpoint_complete(1, {"ab": 2, "cde": 3}) is None
    True
    """

    #: short description for explain() and error messages
    label: str = "source"
    #: whether the input ends by itself
    bounded: bool = True
    #: splits read at the same time (Kafka partitions) rather than one after another
    concurrent_splits: bool = False
    #: splits may appear while it runs (:class:`SplitAdded`: files in a watched directory,
    #: a Kafka topic's new partitions), beyond those :meth:`splits` lists before running
    splits_may_grow: bool = False
    #: whether the input can be read again from a position (``open(resume)``)
    replayable: bool = False
    #: the input happens now (a broker, a watched directory): lag on the wall clock (Metrics)
    live: bool = False
    #: what to pass instead, for the error when a source cannot be replayed
    replay_hint: str = "pass a list, or a function returning a fresh iterable"
    #: the directory the split names are relative to (file sources), see split_names
    split_root: str | None = None

    @abstractmethod
    def splits(self) -> list[str]:
        """Names of the splits, known before running."""

    def split_names(self) -> list[str]:
        """Stable names of the splits, in split order: what a checkpoint keys their
        positions by. Files are named by their path relative to :attr:`split_root` (the
        directory the source was given), so a run resumed from another working
        directory, or with files added to the directory, finds its splits again.

        Examples
        --------
        >>> import pyarrow as pa
        >>> from vstream.io.memory import ArrowSource
        >>> ArrowSource(pa.table({"a": [1]}), batch_size=1, bounded=None).split_names()
        ['arrow']
        """
        names = self.splits()
        root = self.split_root
        if root is None:
            return names
        base = os.path.abspath(root)
        return [os.path.relpath(os.path.abspath(n), base).replace(os.sep, "/") for n in names]

    def config(self) -> dict[str, object] | None:
        """What the source was built from, as its constructor took it: ``kind`` names
        the constructor (``"polars"``, ``"arrow"``, ``"parquet"``), the other keys its
        arguments. A plan travels to another process with it
        (:mod:`vstream.plan.serialize`). None: the source cannot travel (it reads a
        generator, a file object or a function's output, or keeps no copy of its input).

        Examples
        --------
        >>> import pyarrow as pa
        >>> from vstream.io.memory import ArrowSource
        >>> ArrowSource(pa.table({"a": [1]}), batch_size=1, bounded=None).config()["kind"]
        'arrow'
        >>> ArrowSource(iter(pa.table({"a": [1]}).to_batches()), None, None).config() is None
        True
        """
        return None

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The Arrow schema of every batch, known before running."""

    @abstractmethod
    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        """Start reading; with ``resume`` (split index to :class:`SplitPosition`), go on
        where a checkpoint stood.

        Splits marked ended are skipped (no event at all), a split with a position starts
        right after it, and the others at their beginning. A source that is not
        ``replayable`` refuses any ``resume`` with a :class:`~vstream.errors.SourceError`.

        ``splits`` (split indexes; None: all) are the only splits read, in split order:
        their events carry the split indexes, positions, batches, dead letters and split
        ends a read of all splits gives for them, so the readers of disjoint sets of
        splits (one per partition) together give the events of one read. ``resume`` keys
        must be among them. :meth:`resume_points` checks both and gives the splits to
        read, so a source need not handle ``splits`` otherwise.

        ``columns`` are the columns this run reads (None: all), as the runtime's
        projection pushdown found them: the others never reach Polars, so a source may
        leave them out of its batches and of its checks (a Parquet source reads only
        these from its files; a source that checks strings for valid UTF-8 checks only
        these: Nexmark Q1 reads no string column, and checking two cost it ~150 ms of
        270). Batches, rows, positions and split ends are those of a read of all columns.
        """

    def open_split(
        self,
        name: str,
        position: SplitPosition | None = None,
        *,
        columns: frozenset[str] | None = None,
    ) -> Reader:
        """A reader of the split named ``name`` alone (a name of :meth:`split_names`; a
        name listed twice is ``name#2`` the second time, as a checkpoint names it), from
        ``position`` (None: its beginning): the events a read of all splits gives for
        this one after that point, split index included. ``columns`` as in :meth:`open`.

        Examples
        --------
        >>> import pyarrow as pa
        >>> from vstream.io.base import SplitPosition
        >>> from vstream.io.memory import ArrowSource
        >>> src = ArrowSource(pa.table({"a": [1, 2, 3]}), batch_size=2, bounded=None)
        >>> reader = src.open_split("arrow", SplitPosition(2))
        >>> event = reader.poll(1.0)
        >>> event.split, event.batch["a"].to_pylist(), event.position
        (0, [3], 3)
        >>> src.open_split("nope")
        Traceback (most recent call last):
        ...
        vstream.errors.SourceError: ...: no split named 'nope' to open; its split is 'arrow'
        """
        names = unique_split_names(self.split_names())
        try:
            index = names.index(name)
        except ValueError:
            shown = ", ".join(repr(n) for n in names[:5])
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            its = (
                f"its split{'s are' if len(names) != 1 else ' is'} {shown}{more}"
                if names
                else "it has no split"
            )
            msg = f"{self.label}: no split named {name!r} to open; {its}"
            raise SourceError(msg) from None
        resume = None if position is None else {index: position}
        return self.open(resume, columns=columns, splits=(index,))

    def use_checkpoints(self, directory: Path, step: str) -> None:  # noqa: B027 - optional hook
        """Called before :meth:`open` when the run checkpoints into ``directory``, with
        the id of the source step reading this source. A no-op here; a source that is
        not replayable by itself keeps its write-ahead log there (MQTT, under
        ``directory / "sources"``)."""

    def on_checkpoint_complete(self, epoch: int, positions: Mapping[str, object]) -> None:  # noqa: B027 - optional hook
        """Called once the checkpoint of ``epoch`` is durable (its manifest on disk, the
        sinks committed), with the positions it holds for this source's splits, by split
        name (None: nothing consumed from that split yet). Called in the run's thread,
        once per checkpoint and per source step reading this source; never for a
        checkpoint whose write failed.

        A no-op here. A broker source commits its consumer offsets there (Kafka) or
        acknowledges the messages up to these positions (MQTT): what a restart would read
        again is then never past what the checkpoint holds. An error raised here fails
        the run; the checkpoint stays durable, and a restart resumes from it.
        """

    def resume_points(
        self,
        resume: Mapping[int, SplitPosition] | None,
        splits: Collection[int] | None = None,
    ) -> dict[int, object | None]:
        """Per split still to read, in split order, the position to start after (None:
        its beginning); splits that had ended are left out, and with ``splits`` (split
        indexes) those not among them. Refuses (:class:`~vstream.errors.SourceError`)
        an index out of range and a ``resume`` key not among ``splits``."""
        n = len(self.splits())
        chosen = range(n) if splits is None else self._chosen_splits(splits, n)
        if resume is None:
            return dict.fromkeys(chosen)
        if not self.replayable:
            msg = (
                f"{self.label} cannot be replayed from a checkpointed position: it reads "
                f"its input only once; {self.replay_hint}"
            )
            raise SourceError(msg)
        bad = [k for k in resume if not (isinstance(k, int) and 0 <= k < n)]
        if bad:
            msg = f"{self.label}: cannot resume splits {bad}; it has {n} split(s)"
            raise SourceError(msg)
        if splits is not None:
            outside = sorted(k for k in resume if k not in chosen)
            if outside:
                msg = (
                    f"{self.label}: cannot resume split(s) {outside}: this reader opens "
                    f"only split(s) {list(chosen)}; pass their positions to the reader "
                    "that opens them, or add them to splits="
                )
                raise SourceError(msg)
        out: dict[int, object | None] = {}
        for i in chosen:
            sp = resume.get(i)
            if sp is None:
                out[i] = None
            elif not sp.ended:
                out[i] = sp.position
        return out

    def _chosen_splits(self, splits: Collection[int], n: int) -> list[int]:
        """``splits`` checked against the source's ``n`` splits, in split order."""
        if isinstance(splits, str | bytes) or not isinstance(splits, Collection):
            msg = (
                f"{self.label}: splits= takes a collection of split indexes, got "
                f"{type(splits).__name__}; open a split by name with open_split()"
            )
            raise SourceError(msg)
        bad = [
            k for k in splits if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n
        ]
        if bad:
            has = f"indexes 0 to {n - 1}" if n > 1 else "index 0" if n else "none"
            msg = (
                f"{self.label}: cannot open split(s) {', '.join(repr(k) for k in bad)}: "
                f"it has {n} split(s), {has} (their names: split_names())"
            )
            raise SourceError(msg)
        return sorted(set(splits))

    def total_rows(self) -> int | None:
        """The number of rows, where known without reading (for progress reporting)."""
        return None

    def split_lower_bounds(self, column: str, dtype: pl.DataType) -> list[int | None] | None:
        """Per split (in :meth:`splits` order), a lower bound of ``column`` known before
        reading (file statistics, in the column's physical unit; None for a split without
        one), or None when the source knows none. Event-time assignment holds a split's
        watermark there until the split starts."""
        return None


def unique_split_names(names: list[str]) -> list[str]:
    """Split names made unique, as a checkpoint records them: a name listed again (a
    file given twice) is ``name#2``, ``name#3``...

    Examples
    --------
    >>> from vstream.io.base import unique_split_names
    >>> unique_split_names(["a.parquet", "b.parquet", "a.parquet"])
    ['a.parquet', 'b.parquet', 'a.parquet#2']
    """
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0) + 1
        seen[name] = k
        out.append(name if k == 1 else f"{name}#{k}")
    return out


def split_root(
    path: str | os.PathLike[str] | list[str | os.PathLike[str]], files: list[str]
) -> str:
    """The directory a file source's split names are relative to: the directory it was
    given, the fixed part of a glob, a file's folder, or the common folder of a list.

    Examples
    --------
    >>> from vstream.io.base import split_root
    >>> split_root("data/in/a.parquet", ["data/in/a.parquet"])
    'data/in'
    >>> split_root("data/*/day-*.parquet", ["data/a/day-1.parquet"])
    'data'
    """
    if isinstance(path, list | tuple):
        dirs = [os.path.abspath(os.path.dirname(f)) for f in files]
        return os.path.commonpath(dirs) if dirs else "."
    text = os.fspath(path)
    if os.path.isdir(text):
        return text
    if glob.has_magic(text):
        fixed = []
        for part in text.split(os.sep):
            if glob.has_magic(part):
                break
            fixed.append(part)
        return os.sep.join(fixed) or "."
    return os.path.dirname(text) or "."


def row_position(position: object, label: str) -> int:
    """A checkpointed position that counts rows or items, checked."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        msg = f"{label}: cannot resume from position {position!r}; expected a row count"
        raise SourceError(msg)
    return position


def sample_live(it: Iterator[Any], delay: float, limit: int) -> tuple[list[Any], Iterator[Any]]:
    """The first items of a live iterator for schema inference, and an iterator of all
    of them.

    The sample is what arrives within ``delay`` seconds (a source's ``max_delay``) of the
    first item, at most ``limit`` items, so an input that pauses does not hold the build,
    and then the first batch, until the pause ends. The items are pulled in a thread; an
    item it was waiting for when the sample closed comes next in the iterator, and an
    error of the input is raised here (during the sample) or by the iterator (after).
    """
    got: list[Any] = []
    cond = threading.Condition()
    done = False
    error: BaseException | None = None

    def pull() -> None:
        nonlocal done, error
        try:
            for item in it:
                with cond:
                    got.append(item)
                    cond.notify_all()
                    if stop.is_set() or len(got) >= limit:
                        return
        except BaseException as exc:  # handed to the builder or to the run
            error = exc
        finally:
            with cond:
                done = True
                cond.notify_all()

    stop = threading.Event()
    thread = threading.Thread(target=pull, name="vstream-sample", daemon=True)
    thread.start()
    with cond:
        cond.wait_for(lambda: bool(got) or done)
        deadline = time.monotonic() + delay
        while not done and len(got) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(left)
        stop.set()
        sample = list(got)
        if done and error is not None:
            raise error

    def rest() -> Iterator[Any]:
        yield from sample
        thread.join()  # it may still wait for the record after the sample
        yield from got[len(sample) :]
        if error is not None:
            raise error
        yield from it

    return sample, rest()


def buffered_reader(
    items: Iterator[object],
    convert: Callable[[list[Any]], tuple[pa.RecordBatch | None, pa.RecordBatch | None]],
    *,
    batch_size: int,
    max_delay: float | None,
    name: str,
    skip: int = 0,
) -> ThreadedReader:
    """A reader thread that buffers ``items`` into batches of ``batch_size``.

    A partial batch is handed out once ``max_delay`` seconds have passed since its first
    item, even while the iterator is blocked: the consumer's ``poll`` flushes it (never
    with ``max_delay=None``: for input that is all there, batches then depend on the
    items only). ``convert`` turns a list of items into ``(batch, dead letters)``;
    positions count items. ``skip`` items are passed over first (a resumed run: the
    thread re-iterates them), and positions go on from there.
    """
    lock = threading.Lock()
    buf: list[Any] = []
    first_at = 0.0
    pos = skip
    if skip:
        items = itertools.islice(items, skip, None)

    def flush() -> Data:
        # called with the lock held
        nonlocal buf, pos
        taken, buf = buf, []
        pos += len(taken)
        batch, dead = convert(taken)
        return Data(
            0,
            batch if batch is not None and batch.num_rows else None,
            pos,
            dead if dead is not None and dead.num_rows else None,
        )

    def produce(put: Callable[[SourceEvent], bool]) -> None:
        nonlocal first_at
        for item in items:
            with lock:
                if not buf:
                    first_at = time.monotonic()
                buf.append(item)
                # put under the lock: an idle flush cannot overtake this batch; put
                # returns False once the run is over, and the thread ends
                if len(buf) >= batch_size and not put(flush()):
                    return
        with lock:
            if buf and not put(flush()):
                return
        put(SplitEnd(0))

    if max_delay is None:
        return ThreadedReader(produce, name=name)
    delay = max_delay

    def on_idle() -> Data | None:
        # never wait for the lock: the producer may hold it while blocked on a full queue
        if not lock.acquire(blocking=False):
            return None
        try:
            if buf and reader.queue_empty() and time.monotonic() - first_at >= delay:
                return flush()
            return None
        finally:
            lock.release()

    reader = ThreadedReader(
        produce, on_idle=on_idle, idle_interval=max(delay / 4, 0.001), name=name
    )
    return reader
