"""q0 pass-through: every bid, unchanged (the cost of reading and handing on events)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams

INPUTS = ("bid",)
COLUMNS = ["auction", "bidder", "price", "date_time", "extra"]


def query(s: Streams) -> vs.Stream:
    return s.bid.select(COLUMNS)


def oracle(f: Frames) -> pl.DataFrame:
    return f.bid.select(COLUMNS)
