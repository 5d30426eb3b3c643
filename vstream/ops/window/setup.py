"""Limits shared by the pane and session logic of a window operator."""

from __future__ import annotations

__all__: list[str] = []

_KEY_SLACK = 65_536  # dead keys a window's key index may hold beyond its live ones (x2)
