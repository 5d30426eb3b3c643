"""q3 local item suggestion: auctions of category 10 by sellers in Oregon, Idaho or
California, with the seller's name, city and state (a regular join of two streams)."""

from __future__ import annotations

import polars as pl

import vstream as vs
from nexmark._common import Frames, Streams

INPUTS = ("person", "auction")
STATES = ["OR", "ID", "CA"]
OUT = ["name", "city", "state", "id"]


def query(s: Streams) -> vs.Stream:
    auctions = s.auction.filter(pl.col("category") == 10).select("id", "seller", "date_time")
    people = s.person.filter(pl.col("state").is_in(STATES)).select(
        "id", "name", "city", "state", "date_time"
    )
    # every auction's seller already exists (Nexmark's model), so keeping each side's
    # rows for as long as the input lasts is what an unbounded SQL join does too
    joined = auctions.join(people, left_on="seller", right_on="id")
    return joined.select(OUT)


def oracle(f: Frames) -> pl.DataFrame:
    auctions = f.auction.filter(pl.col("category") == 10)
    people = f.person.filter(pl.col("state").is_in(STATES))
    return auctions.join(people, left_on="seller", right_on="id").select(OUT)
