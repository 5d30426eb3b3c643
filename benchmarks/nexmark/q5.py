"""q5 hot items: per sliding window (10 s every 2 s), the auctions with the most bids.

Composed as in Nexmark's SQL: a count per auction and hopping window, the maximum of
those counts per window (a window over the window results: their event time is
``window_end - 1``, so each hop's counts fall in the 2 s tumbling window that ends with
it), and a windowed join of the two on ``(window end, count)``.
"""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams, ms

INPUTS = ("bid",)
SIZE, SLIDE = 10_000, 2_000  # ms


def query(s: Streams) -> vs.Stream:
    counts = s.bid.window(vs.hopping("10s", "2s"), by="auction").agg(pl.len().alias("num"))
    maxima = (
        counts.window(vs.tumbling("2s"))
        .agg(pl.col("num").max().alias("maxn"))
        .select("window_end", "maxn")
    )
    hops = counts.rename({"window_start": "starttime", "window_end": "endtime"})
    hot = hops.join(
        maxima,
        left_on=["endtime", "num"],
        right_on=["window_end", "maxn"],
        window=vs.tumbling("2s"),
    )
    return hot.select("auction", "num", "starttime", "endtime")


def oracle(f: Frames) -> pl.DataFrame:
    # every hop window [start, start + 10 s) holding the bid: start from the latest slide
    # boundary at or before it back over 10 s
    hops = f.bid.select(
        "auction",
        start=pl.int_ranges(
            ms("date_time") // SLIDE * SLIDE - SIZE + SLIDE,
            ms("date_time") // SLIDE * SLIDE + 1,
            SLIDE,
        ),
    ).explode("start")
    counts = hops.group_by("auction", "start").agg(num=pl.len())
    maxima = counts.group_by("start").agg(maxn=pl.col("num").max())
    return (
        counts.join(maxima, on="start")
        .filter(pl.col("num") == pl.col("maxn"))
        .select(
            "auction",
            "num",
            starttime=pl.from_epoch("start", "ms"),
            endtime=pl.from_epoch(pl.col("start") + SIZE, "ms"),
        )
    )
