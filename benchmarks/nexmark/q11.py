"""q11 user sessions: bids per bidder and session (a session closes after 10 s without
a bid from that bidder)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams, ms

INPUTS = ("bid",)
GAP = 10_000  # ms


def query(s: Streams) -> vs.Stream:
    return s.bid.window(vs.session("10s"), by="bidder").agg(pl.len().alias("bid_count"))


def oracle(f: Frames) -> pl.DataFrame:
    t = f.bid.select("bidder", t=ms("date_time")).sort("bidder", "t")
    new = (pl.col("t").diff().over("bidder").fill_null(GAP)) >= GAP
    sessions = t.with_columns(session=new.cum_sum())
    return (
        sessions.group_by("bidder", "session")
        .agg(
            window_start=pl.from_epoch(pl.col("t").min(), "ms"),
            window_end=pl.from_epoch(pl.col("t").max() + GAP, "ms"),
            bid_count=pl.len().cast(pl.UInt32),
        )
        .drop("session")
    )
