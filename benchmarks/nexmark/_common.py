"""What the Nexmark queries share: their inputs, as vstream streams and as Polars frames."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

import vstream as vs

#: the Nexmark DDL's watermark: ``dateTime - INTERVAL '4' SECOND``
BOUND = "4s"


@dataclass(frozen=True)
class Streams:
    """The person, auction and bid streams, each watermarked on ``date_time``."""

    person: vs.Stream
    auction: vs.Stream
    bid: vs.Stream


@dataclass(frozen=True)
class Frames:
    """The same data as whole Polars DataFrames (for the oracles)."""

    person: pl.DataFrame
    auction: pl.DataFrame
    bid: pl.DataFrame


def watermarked(source: vs.Stream) -> vs.Stream:
    """A Nexmark stream with the reference watermark."""
    return source.with_watermark("date_time", BOUND)


def ms(column: str) -> pl.Expr:
    """A Datetime column as integer milliseconds (for window arithmetic in the oracles)."""
    return pl.col(column).dt.epoch("ms")
