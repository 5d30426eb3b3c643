"""q2 selection: the bids on a few auctions (``auction % 123 == 0``)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams

INPUTS = ("bid",)
PICK = pl.col("auction") % 123 == 0


def query(s: Streams) -> vs.Stream:
    return s.bid.filter(PICK).select("auction", "price")


def oracle(f: Frames) -> pl.DataFrame:
    return f.bid.filter(PICK).select("auction", "price")
