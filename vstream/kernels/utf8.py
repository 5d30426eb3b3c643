"""UTF-8 validation of the strings of an Arrow array, one verdict per row.

The rule is Python's strict decoder (``bytes.decode("utf-8")``, RFC 3629): no overlong
forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["invalid_utf8_rows"]


@numba.njit(cache=True, nogil=True)
def invalid_utf8_rows(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``out[i]`` is True when ``data[offsets[i]:offsets[i + 1]]`` is not valid UTF-8.

    Offsets out of ``data``'s bounds or decreasing mark their row invalid instead of
    being read: a damaged file cannot make this kernel read outside its buffers.
    """
    n_rows = offsets.size - 1
    size = data.size
    out = np.zeros(max(n_rows, 0), dtype=np.bool_)
    for i in range(n_rows):
        lo = offsets[i]
        hi = offsets[i + 1]
        if lo < 0 or hi < lo or hi > size:
            out[i] = True
            continue
        j = lo
        while j < hi:
            b0 = data[j]
            if b0 < 0x80:
                j += 1
                continue
            if 0xC2 <= b0 <= 0xDF:
                need = 1
                low, high = 0x80, 0xBF
            elif 0xE0 <= b0 <= 0xEF:
                need = 2
                # E0: no overlong form; ED: no surrogate
                low = 0xA0 if b0 == 0xE0 else 0x80
                high = 0x9F if b0 == 0xED else 0xBF
            elif 0xF0 <= b0 <= 0xF4:
                need = 3
                # F0: no overlong form; F4: nothing above U+10FFFF
                low = 0x90 if b0 == 0xF0 else 0x80
                high = 0x8F if b0 == 0xF4 else 0xBF
            else:  # a continuation byte first, C0/C1 (overlong) or F5..FF
                out[i] = True
                break
            if j + need >= hi:  # truncated sequence
                out[i] = True
                break
            b1 = data[j + 1]
            if b1 < low or b1 > high:
                out[i] = True
                break
            bad = False
            for k in range(2, need + 1):
                c = data[j + k]
                if c < 0x80 or c > 0xBF:
                    bad = True
                    break
            if bad:
                out[i] = True
                break
            j += need + 1
    return out
