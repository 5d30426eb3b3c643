"""Keyed state and its Arrow snapshot format.

``key_index.KeyIndex`` maps group keys to dense ids across batches (a numba hash table
for integer keys, hashed and checked for the rest); window and join state, indexed by
those ids, arrives with windowed aggregation.
"""
