"""Read a plain or gzip-compressed log file as Arrow batches of lines.

Lines are cut with NumPy and wrapped as Arrow strings without creating a Python object per
line. Only ``\\n`` ends a line (CRLF and mixed endings lose their ``\\r``); the empty remainder
after a final newline is not a line, and a last line without a newline is one. Bytes that are
not UTF-8 are kept visible as ``\\xNN`` escapes, the convention Apache itself uses.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketguard.errors import InputError

__all__ = ["LineBatch", "iter_line_batches", "lines_from_bytes", "peek_lines"]

_BLOCK = 8 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Consecutive lines of one file: ``lines[i]`` is line ``first_line + i``."""

    first_line: int
    lines: pa.StringArray
    bytes_consumed: int


def lines_from_bytes(data: bytes | memoryview, *, final: bool = True) -> pa.StringArray:
    """Split a buffer into an Arrow array of lines (terminators removed, UTF-8 guaranteed).

    With ``final`` False the buffer must end with a newline.
    """
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    arr = _as_strings(data, ends, final)
    if arr is None:  # invalid UTF-8: re-encode with visible escapes, newlines are unchanged
        data = bytes(data).decode("utf-8", "backslashreplace").encode("utf-8")
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        arr = _as_strings(data, ends, final)
        assert arr is not None
    return pc.utf8_rtrim(arr, characters="\r\n")


def _as_strings(data: bytes | memoryview, ends: np.ndarray, final: bool) -> pa.StringArray | None:
    size = len(data)
    if size >= 2**31 - 1:
        raise InputError("a batch of lines exceeds 2 GiB; lower batch_lines")
    tail = final and size > 0 and (len(ends) == 0 or ends[-1] != size - 1)
    n = len(ends) + int(tail)
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1 : len(ends) + 1] = ends + 1
    if tail:
        offsets[-1] = size
    binary = pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:
        return None


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw, raw


def peek_lines(path: Path, limit: int = 50) -> list[str]:
    """Return up to ``limit`` first lines of the file (for format detection)."""
    try:
        raw, stream = _open(path)
        with raw, stream:
            head = stream.read(256 << 10)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read log file: {_why(exc)}", source=str(path)) from exc
    cut = head.rfind(b"\n")
    head = head[: cut + 1] if cut >= 0 and len(head) == 256 << 10 else head
    return lines_from_bytes(head).to_pylist()[:limit]


def iter_line_batches(path: Path, batch_lines: int) -> Iterator[LineBatch]:
    """Yield the file's lines in batches of at most ``batch_lines``.

    Raises :class:`InputError` naming the file when it cannot be opened or read (missing,
    a directory, unreadable, a truncated or corrupt gzip stream).
    """
    if batch_lines < 1:
        raise ValueError("batch_lines must be >= 1")
    try:
        raw, stream = _open(path)
        with raw, stream:
            yield from _batches(raw, stream, batch_lines)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read log file: {_why(exc)}", source=str(path)) from exc


def _batches(raw: BinaryIO, stream: BinaryIO, batch_lines: int) -> Iterator[LineBatch]:
    pending: list[bytes] = []
    count, first = 0, 1
    while True:
        block = stream.read(_BLOCK)
        if not block:
            break
        pending.append(block)
        count += block.count(b"\n")
        if count < batch_lines:
            continue
        data = memoryview(b"".join(pending))
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        start, k = 0, 0
        while len(ends) - k >= batch_lines:
            stop = int(ends[k + batch_lines - 1]) + 1
            lines = lines_from_bytes(data[start:stop], final=False)
            yield LineBatch(first, lines, raw.tell())
            start, k, first = stop, k + batch_lines, first + batch_lines
        pending, count = [bytes(data[start:])], len(ends) - k
    rest = b"".join(pending)
    if rest:
        yield LineBatch(first, lines_from_bytes(rest), raw.tell())


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
