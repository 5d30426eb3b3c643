"""UTF-8 validation of the strings of an Arrow array, one verdict per row.

The rule is Python's strict decoder (``bytes.decode("utf-8")``, RFC 3629): no overlong
forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence.
"""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit

__all__ = ["inline_views_ascii", "invalid_utf8_rows"]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def inline_views_ascii(views: np.ndarray) -> int:
    """Over Arrow string views (``views``: one row of four int32 words a view: the length,
    then up to 12 bytes of inline text): 0 when every view is inline (length <= 12) and
    ASCII, 1 when an inline text has a byte >= 0x80, 2 when a view is longer (its text
    lives in a data buffer, which this does not read). Bytes past a view's length
    (padding) are masked out; a negative length is read as empty.
    """
    # the high bits of each word's bytes within the length, by length: no branch a byte
    # (a view's text is read as three little-endian int32 words)
    masks = np.zeros((13, 3), np.int64)
    for n in range(13):
        for k in range(3):
            valid = min(max(n - 4 * k, 0), 4)
            masks[n, k] = ((np.int64(1) << (8 * valid)) - 1) & 0x80808080
    found = 0
    high = np.int64(0)
    for i in range(views.shape[0]):
        n = views[i, 0]
        if n > 12:
            found = 2
            n = 4  # the prefix of a long string's text
        elif n < 0:
            n = 0
        high |= (
            (np.int64(views[i, 1]) & masks[n, 0])
            | (np.int64(views[i, 2]) & masks[n, 1])
            | (np.int64(views[i, 3]) & masks[n, 2])
        )
    return 1 if high else found
