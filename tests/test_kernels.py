"""Every kernel against its numpy reference on random input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vstream.kernels.event_time import event_time_stats, event_time_stats_reference

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32]


@settings(max_examples=200, deadline=None)
@given(
    ts=st.sampled_from(INT_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, st.integers(0, 300), elements=hnp.from_dtype(np.dtype(dt)))
    ),
    watermark=st.integers(-(2**63), 2**63 - 1),
)
def test_event_time_stats_matches_reference(ts: np.ndarray, watermark: int) -> None:
    assert event_time_stats(ts, watermark) == event_time_stats_reference(ts, watermark)


def test_event_time_stats_strided_view() -> None:
    ts = np.arange(20, dtype=np.int64)[::3]
    assert event_time_stats(ts, 7) == event_time_stats_reference(ts, 7)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(np.zeros((2, 2), dtype=np.int64), ValueError), (np.zeros(3, dtype=np.float64), TypeError)],
)
def test_event_time_stats_checks_inputs(bad: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        event_time_stats(bad, 0)
