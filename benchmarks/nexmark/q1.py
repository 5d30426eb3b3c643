"""q1 currency conversion: bid prices from dollars to euros."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams

INPUTS = ("bid",)
EXPRS = [
    pl.col("auction"),
    pl.col("bidder"),
    (pl.col("price") * 0.908).alias("price"),
    pl.col("date_time"),
    pl.col("extra"),
]


def query(s: Streams) -> vs.Stream:
    return s.bid.select(EXPRS)


def oracle(f: Frames) -> pl.DataFrame:
    return f.bid.select(EXPRS)
