"""Vectorised parser for ordinary combined/common log lines (a structural index in NumPy).

A combined line has a rigid skeleton: exactly six double quotes, a 26-character timestamp in
brackets right before the first one, a 3-digit status after the second. One NumPy scan finds
every quote of the batch; everything else is read through small fixed-width windows at known
offsets (``sliding_window_view`` rows, no per-line Python). Fields come out as Arrow string
*views* into the batch's own buffer, so nothing is copied until the final cast.

Any line whose skeleton is not exactly as expected — escaped quotes, a user name with spaces,
a very long head, a control character, a non-origin-form target, a line within 64 bytes of the
end of a large buffer — is simply not accepted here; the caller sends it to the per-line scanner in
``_combined.py``, which parses it or says why not. A test checks both paths agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["parse_fast"]

_PAD = 64
_COPY_BELOW = 1 << 20
_HEAD = 48  # longest "host ident user" accepted here
_MONTHS = {m: i + 1 for i, m in enumerate(
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]
)}  # fmt: skip
_MONTH_CODES = np.array(sorted(int.from_bytes(k, "big") for k in _MONTHS), dtype=np.int64)
_MONTH_OF_CODE = np.array(
    [_MONTHS[int(c).to_bytes(3, "big")] for c in _MONTH_CODES], dtype=np.int64
)
_METHOD_CHAR = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-":
    _METHOD_CHAR[_c] = True
_ALPHA = np.zeros(256, dtype=bool)
_ALPHA[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] = True
_TS_DIGITS = [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 22, 23, 24, 25]
_TS_PUNCT_COLS = [2, 6, 11, 14, 17, 20]
_TS_PUNCT = np.frombuffer(b"//::: ", np.uint8)
_INLINE_MASK = (np.arange(12)[None, :] < np.arange(13)[:, None]).astype(np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class _Batch:
    """Byte buffer of a batch of lines plus fixed-width window readers over it.

    Small buffers are copied with zero padding so windows never leave the array; large ones are
    read in place and the lines within ``_PAD`` bytes of the end are left to the slow path.
    """

    def __init__(self, lines: pa.StringArray) -> None:
        n = len(lines)
        offsets = np.frombuffer(lines.buffers()[1], np.int32, n + 1, lines.offset * 4)
        self.start = offsets[:-1].astype(np.int64)
        self.end = offsets[1:].astype(np.int64)
        self.buffer = lines.buffers()[2] or pa.py_buffer(b"")
        raw = np.frombuffer(self.buffer, np.uint8)
        self.size = len(raw)
        if self.size < _COPY_BELOW:
            self.data = np.zeros(self.size + _PAD, np.uint8)
            self.data[: self.size] = raw
            self.safe = np.ones(n, dtype=bool)
        else:
            self.data = raw
            self.safe = self.end + _PAD <= self.size
        # the byte range these lines occupy (an array slice shares a bigger buffer)
        self.lo, self.hi = (int(self.start[0]), int(self.end[-1])) if n else (0, 0)
        self.scratch = np.empty(self.hi - self.lo, dtype=bool)
        self._windows: dict[int, np.ndarray] = {}

    def find(self, byte: int, *, less: bool = False) -> np.ndarray:
        """Positions of every byte equal to (or, with ``less``, below) ``byte`` in these lines."""
        compare = np.less if less else np.equal
        compare(self.data[self.lo : self.hi], byte, out=self.scratch)
        return np.flatnonzero(self.scratch) + self.lo

    def lines_with(self, pos: np.ndarray) -> np.ndarray:
        """Per line, whether any of the given buffer positions falls inside it."""
        line = np.searchsorted(self.end, pos, side="right")
        return np.bincount(line, minlength=len(self.end) + 1)[: len(self.end)] > 0

    def at(self, pos: np.ndarray) -> np.ndarray:
        """Byte at absolute positions (clipped to the array)."""
        return self.data[np.clip(pos, 0, len(self.data) - 1)]

    def window(self, pos: np.ndarray, width: int) -> np.ndarray:
        """``width`` bytes starting at each position, one row per position."""
        view = self._windows.get(width)
        if view is None:
            data = self.data if len(self.data) >= width else np.zeros(width, np.uint8)
            view = self._windows[width] = np.lib.stride_tricks.sliding_window_view(data, width)
        return view[np.clip(pos, 0, len(view) - 1)]


def parse_fast(lines: pa.StringArray) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Parse the lines this path accepts; return their row indices and ECS columns."""
    b = _Batch(lines)
    s, e, wrapped = _unwrap(b)
    q, ok = _quotes(b, s, e, wrapped)
    ok &= b.safe & ~b.lines_with(_control_bytes(b))
    head = _head(b, s, q[0])
    ok &= head.pop("ok")
    ts, ts_ok = _timestamp(b, q[0] - 28)
    ok &= ts_ok
    req = _request(b, q[0] + 1, q[1])
    ok &= req.pop("ok")
    tail = _status_tail(b, q, e)
    ok &= tail.pop("ok")
    nbytes = tail.pop("_nbytes")
    rows = np.flatnonzero(ok)
    spans = {**head, **req, **tail}
    cols = {
        name: _strings(b, a[rows], z[rows], None if valid is None else valid[rows])
        for name, (a, z, valid) in spans.items()
    }
    cols.update(_url(b, req["url.original"][0][rows], cols["url.original"]))
    cols["@timestamp"] = pa.array(ts[rows], pa.timestamp("us", tz="UTC"))
    cols["http.response.status_code"] = pa.array(_tail_status(b, q[1][rows]), pa.int32())
    cols["http.response.body.bytes"] = pa.array(nbytes[rows], pa.int64())
    return rows, cols


def _control_bytes(b: _Batch) -> np.ndarray:
    """Positions of ASCII control characters (the slow path escapes them)."""
    return np.concatenate((b.find(32, less=True), b.find(127)))


def _unwrap(b: _Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line bounds without one pair of outer double quotes (a CSV-export artefact)."""
    wrapped = (b.end - b.start >= 2) & (b.at(b.start) == 34) & (b.at(b.end - 1) == 34)
    return b.start + wrapped, b.end - wrapped, wrapped


def _quotes(
    b: _Batch, s: np.ndarray, e: np.ndarray, wrapped: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Positions of the six (combined) or two (common) quotes of each line, and eligibility."""
    pos = b.find(34)
    lo = np.searchsorted(pos, b.start) + wrapped  # skip the wrapping quotes themselves
    hi = np.searchsorted(pos, b.end) - wrapped
    count = hi - lo
    ok = ((count == 6) | (count == 2)) & ~b.lines_with(pos[b.at(pos - 1) == 92])
    top = max(len(pos) - 1, 0)
    q = [
        np.where(count > k, pos[np.minimum(lo + k, top)] if len(pos) else -1, -1) for k in range(6)
    ]
    q.append(count)
    return q, ok


def _first(mask: np.ndarray) -> np.ndarray:
    """Column index of the first True per row (the width if none)."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), mask.shape[1])


def _head(b: _Batch, s: np.ndarray, q0: np.ndarray) -> dict[str, Any]:
    """'host ident user [' before the timestamp; spans of host and user."""
    found = np.flatnonzero(b.window(s, _HEAD) == 32)  # row-major: row * _HEAD + column
    row, col = found // _HEAD, found % _HEAD
    idx = np.searchsorted(row, np.arange(len(s)))
    first, second, third = (
        np.where(row[np.minimum(idx + k, len(row) - 1)] == np.arange(len(s)),
                 col[np.minimum(idx + k, len(row) - 1)], _HEAD) if len(row) else np.full(len(s), _HEAD)
        for k in (0, 1, 2)
    )  # fmt: skip
    bracket = q0 - 29  # '[' of a 26-character timestamp followed by '] "'
    ok = (
        (third == bracket - 1 - s) & (first > 0) & (second > first + 1) & (third > second + 1)
        & (b.at(bracket) == 91) & (b.at(q0 - 2) == 93) & (b.at(q0 - 1) == 32)
    )  # fmt: skip
    return {
        "ok": ok,
        "source.ip": (s, s + first, None),
        "user.name": (s + second + 1, s + third, _not_dash(b, s + second + 1, s + third)),
    }


def _timestamp(b: _Batch, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse 'dd/Mon/yyyy:HH:MM:SS +zzzz' at each position into UTC epoch microseconds.

    Consecutive lines mostly share their second, so only changed texts are computed.
    """
    w = b.window(t, 26)
    if len(w) == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    change = np.ones(len(w), dtype=bool)
    change[1:] = (w[1:] != w[:-1]).any(axis=1)
    group = np.cumsum(change) - 1
    micros, ok = _clf_time(w[change])
    return micros[group], ok[group]


def _clf_time(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = w - np.uint8(48)  # wraps below '0', so '<= 9' tests for a digit
    ok = (d[:, _TS_DIGITS] <= 9).all(axis=1) & (w[:, _TS_PUNCT_COLS] == _TS_PUNCT).all(axis=1)
    ok &= (w[:, 21] == 43) | (w[:, 21] == 45)
    code = (w[:, 3].astype(np.int64) << 16) | (w[:, 4].astype(np.int64) << 8) | w[:, 5]
    idx = np.clip(np.searchsorted(_MONTH_CODES, code), 0, 11)
    ok &= _MONTH_CODES[idx] == code
    month = _MONTH_OF_CODE[idx]
    d = d.astype(np.int64)
    two = lambda c: d[:, c] * 10 + d[:, c + 1]  # noqa: E731
    day, year, hour, minute, sec = two(0), two(7) * 100 + two(9), two(12), two(15), two(18)
    tzh, tzm = two(22), two(24)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    dim = _DAYS_IN_MONTH[month] + ((month == 2) & leap)
    ok &= (day >= 1) & (day <= dim) & (hour <= 23) & (minute <= 59) & (sec <= 59)
    ok &= (tzh <= 23) & (tzm <= 59) & (year >= 1)
    sign = np.where(w[:, 21] == 45, -1, 1)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec
    seconds -= sign * (tzh * 3600 + tzm * 60)
    return np.where(ok, seconds, 0) * 1_000_000, ok


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _request(b: _Batch, r0: np.ndarray, r1: np.ndarray) -> dict[str, Any]:
    """'METHOD /target HTTP/x' between the first two quotes."""
    mw = b.window(r0, 16)
    m_len = _first(mw == 32)
    cols = np.arange(16)
    method_ok = (_METHOD_CHAR[mw] | (cols >= m_len[:, None])).all(axis=1) & _ALPHA[mw[:, 0]]
    vw = b.window(r1 - 12, 12)
    last = 11 - _first((vw == 32)[:, ::-1])
    v_space = r1 - 12 + last  # the space before 'HTTP/'
    http = b.window(v_space + 1, 5)
    ok = (
        method_ok & (m_len >= 1) & (m_len <= 15) & (last >= 0) & (v_space > r0 + m_len + 1)
        & (b.at(r0 + m_len + 1) == 47) & (r1 > v_space + 6)
        & (http == np.frombuffer(b"HTTP/", np.uint8)).all(axis=1)
    )  # fmt: skip
    return {
        "ok": ok,
        "http.request.method": (r0, r0 + m_len, None),
        "url.original": (r0 + m_len + 1, v_space, None),
        "http.version": (v_space + 6, r1, None),
    }


def _status_tail(b: _Batch, q: list[np.ndarray], e: np.ndarray) -> dict[str, Any]:
    """' 200 1234' after the request, then '"referrer" "agent"' (combined) or the end."""
    q1, count = q[1], q[6]
    w = b.window(q1, 24)
    digits = (w[:, 2:5] >= 48) & (w[:, 2:5] <= 57)
    bw = w[:, 6:]
    b_len = _first((bw == 32) | (bw == 34) | (np.arange(18) >= (e - q1 - 6)[:, None]))
    b_end = q1 + 6 + b_len
    b_digits = (((bw >= 48) & (bw <= 57)) | (np.arange(18) >= b_len[:, None])).all(axis=1)
    b_dash = (b_len == 1) & (bw[:, 0] == 45)
    ok = (w[:, 1] == 32) & digits.all(axis=1) & (w[:, 5] == 32) & (b_len >= 1) & (b_len < 18)
    ok &= b_digits | b_dash
    value = np.zeros(len(q1), dtype=np.int64)
    for j in range(int(b_len[ok].max(initial=0))):
        value = np.where(j < b_len, value * 10 + (bw[:, j].astype(np.int64) - 48), value)
    value[b_dash | ~ok] = 0
    combined = count == 6
    ok &= np.where(
        combined,
        (b.at(b_end) == 32) & (q[2] == b_end + 1) & (b.at(q[3] + 1) == 32) & (q[4] == q[3] + 2)
        & ((q[5] + 1 == e) | (b.at(q[5] + 1) == 32)),
        (b_end == e) | (b.at(b_end) == 32),
    )  # fmt: skip
    return {
        "ok": ok,
        "_nbytes": value,
        "http.request.referrer": (q[2] + 1, q[3], combined & _not_dash(b, q[2] + 1, q[3])),
        "user_agent.original": (q[4] + 1, q[5], combined & _not_dash(b, q[4] + 1, q[5])),
    }


def _tail_status(b: _Batch, q1: np.ndarray) -> np.ndarray:
    """The 3-digit status code after the request's closing quote."""
    d = b.window(q1 + 2, 3).astype(np.int32) - 48
    return d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]


def _url(b: _Batch, t0: np.ndarray, target: pa.Array) -> dict[str, pa.Array]:
    """url.path, url.query and url.extension of origin-form targets."""
    lengths = pc.binary_length(target).to_numpy(zero_copy_only=False).astype(np.int64)
    qpos = pc.find_substring(target, "?").to_numpy(zero_copy_only=False).astype(np.int64)
    has_q = qpos >= 0
    p_end = t0 + np.where(has_q, qpos, lengths)
    tail = b.window(p_end - 16, 16)
    in_path = np.arange(16) >= (16 - (p_end - t0))[:, None]
    dot = 15 - _first(((tail == 46) & in_path)[:, ::-1])
    slash = 15 - _first(((tail == 47) & in_path)[:, ::-1])
    has_ext = (dot >= 0) & (dot > slash) & (dot < 15)
    ext = _strings(b, p_end - 15 + dot, p_end, has_ext)
    q_start = t0 + qpos + 1
    q_end = t0 + lengths
    return {
        "url.path": _strings(b, t0, p_end, None),
        "url.query": _strings(b, q_start, q_end, has_q & (q_end > q_start)),
        "url.extension": pc.utf8_lower(ext),
    }


def _not_dash(b: _Batch, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    return (stop - start != 1) | (b.at(start) != 45)


def _strings(b: _Batch, start: np.ndarray, stop: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Arrow strings for byte spans of the batch buffer (built as views, then cast); ``valid``
    False gives null."""
    m = len(start)
    if valid is not None and not valid.any():
        return pa.nulls(m, pa.string())
    if valid is not None:
        start, stop = np.where(valid, start, 0), np.where(valid, stop, 0)
    length = np.maximum(stop - start, 0).astype(np.int32)
    views = np.empty((m, 16), np.uint8)
    views[:, 4:16] = b.window(start, 12)
    v32 = views.view(np.int32)
    short = length <= 12
    views[:, 4:16] *= _INLINE_MASK[np.minimum(length, 12)] | ~short[:, None]
    v32[:, 0] = length
    v32[:, 2] = np.where(short, v32[:, 2], 0)
    v32[:, 3] = np.where(short, v32[:, 3], start.astype(np.int32))
    validity = None
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(pa.string_view(), m, [validity, pa.py_buffer(views), b.buffer])
    return arr.cast(pa.string())
