"""The interface every sink implements: take a branch's batches, and with checkpoints
take part in a two-phase commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import polars as pl

__all__ = ["MODES", "Sink", "SinkMode"]

#: what a file sink does with an output that is not its own checkpointed output
SinkMode = Literal["error", "overwrite", "append"]
MODES: tuple[str, ...] = get_args(SinkMode)


class Sink:
    """Takes a branch's batches. ``close`` is called once at the end of the run.

    With checkpoints a sink takes part in a two-phase commit: rows written during epoch
    ``e`` are staged by :meth:`precommit` (whose JSON state the checkpoint manifest
    lists), and made visible by :meth:`commit` once that manifest is durable. After a
    restart, :meth:`recover` gets the state of the checkpoint the run resumes from.
    A sink that keeps rows in memory has nothing to stage.
    """

    label = "sink"
    #: the epoch whose rows :meth:`write` receives (0 without checkpoints)
    epoch = 0

    def open(self, schema: pl.Schema) -> None:
        self.schema = schema

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        """Called before :meth:`open` when the run checkpoints into ``checkpoint_dir``;
        ``index`` is the sink's place among the run's targets."""

    def recover(self, epoch: int, state: dict[str, Any] | None) -> None:
        """After :meth:`open`: the run resumes after checkpoint ``epoch`` (0: none), whose
        manifest holds ``state`` for this sink. Redo its commit, drop anything later."""
        self.epoch = epoch + 1

    def precommit(self, epoch: int) -> dict[str, Any]:
        """Stage every row of ``epoch`` durably; returns what :meth:`commit` needs."""
        return {}

    def commit(self, epoch: int, state: dict[str, Any]) -> None:
        """The checkpoint of ``epoch`` is durable: make its rows visible; the next rows
        belong to ``epoch + 1``."""
        self.epoch = epoch + 1

    def write(self, df: pl.DataFrame) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called now and then with the wall clock (time-based flushes)."""

    def close(self) -> None:
        """The run has ended (finished, stopped or failed)."""
