"""q8 new users: people who opened an auction in the 10 s tumbling window in which they
registered (persons joined to the sellers of each window)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams, ms

INPUTS = ("person", "auction")
SIZE = 10_000  # ms


def query(s: Streams) -> vs.Stream:
    # one row per (seller, window), as the SQL's GROUP BY does
    sellers = (
        s.auction.window(vs.tumbling("10s"), by="seller")
        .agg(pl.len().alias("auctions"))
        .select("seller", "window_end")
    )
    people = s.person.select("id", "name", "date_time")
    joined = people.join(sellers, left_on="id", right_on="seller", window=vs.tumbling("10s"))
    return joined.select("id", "name", starttime="window_start")


def oracle(f: Frames) -> pl.DataFrame:
    people = f.person.select("id", "name", w=ms("date_time") // SIZE)
    sellers = f.auction.select("seller", w=ms("date_time") // SIZE).unique()
    return people.join(sellers, left_on=["id", "w"], right_on=["seller", "w"]).select(
        "id", "name", starttime=pl.from_epoch(pl.col("w") * SIZE, "ms")
    )
