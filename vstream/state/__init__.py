"""Keyed state stores and their Arrow snapshot format.

Empty until windowed aggregation (the next issue) brings the first keyed state; the
operators that hold state today (event-time assignment, head) snapshot small Arrow
tables of their own.
"""
