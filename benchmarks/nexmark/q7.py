"""q7 highest bid: per 10 s tumbling window, the bids at the window's highest price
(the window's maximum joined back to the bids of the same window)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams, ms

INPUTS = ("bid",)
SIZE = 10_000  # ms
OUT = ["auction", "price", "bidder", "date_time", "extra"]


def query(s: Streams) -> vs.Stream:
    highest = (
        s.bid.window(vs.tumbling("10s"))
        .agg(pl.col("price").max().alias("maxprice"))
        .select("window_end", "maxprice")
    )
    joined = s.bid.join(highest, left_on="price", right_on="maxprice", window=vs.tumbling("10s"))
    return joined.select(OUT)


def oracle(f: Frames) -> pl.DataFrame:
    bids = f.bid.with_columns(w=ms("date_time") // SIZE)
    highest = bids.group_by("w").agg(maxprice=pl.col("price").max())
    return bids.join(highest, left_on=["w", "price"], right_on=["w", "maxprice"]).select(OUT)
