"""Keyed state and its Arrow snapshot format.

``key_index.KeyIndex`` maps group keys to dense ids across batches (a numba hash table
for integer keys, hashed and checked for the rest); ``slots.SlotStore`` holds aggregate
state as struct-of-arrays columns indexed by slot (a (pane, key) pair or a session),
which the window operator snapshots as Arrow tables; ``window.PaneState`` and
``window.SessionState`` are what a window step's checkpoint holds (split and merged by
key group).
"""
