"""Nexmark queries written with vstream's public API, each with a Polars oracle.

Each ``qN`` module has ``INPUTS`` (the streams it reads), ``query(streams)`` building the
vstream pipeline from watermarked :class:`Streams`, and ``oracle(frames)`` computing the
same answer with Polars over whole DataFrames. ``test_nexmark.py`` checks one against the
other on a small run and measures throughput; the figures are in ``README.md``.
"""
