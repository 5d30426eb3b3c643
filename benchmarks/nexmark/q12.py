"""q12 processing-time windows: bids per bidder in 10 s tumbling windows of the
wall clock (arrival time), not of event time.

Which window a bid lands in depends on when it arrives, so the oracle only checks what
does not: every bid is counted once, per bidder.
"""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams

INPUTS = ("bid",)
#: the answer is compared after this: the bids counted per bidder
TOTALS = True


def query(s: Streams) -> vs.Stream:
    return s.bid.window(vs.tumbling("10s"), by="bidder", time="processing").agg(
        pl.len().alias("bid_count")
    )


def totals(result: pl.DataFrame) -> pl.DataFrame:
    return result.group_by("bidder").agg(pl.col("bid_count").sum())


def oracle(f: Frames) -> pl.DataFrame:
    return f.bid.group_by("bidder").agg(bid_count=pl.len().cast(pl.UInt32))
