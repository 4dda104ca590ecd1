"""Multi-pattern prefiltering: find the few events a rule could match, in one pass per field.

Most Sigma web rules are lists of case-insensitive substrings. Evaluating each rule as its own
SQL query rescans every row once per rule (about 50 ms per rule per million rows, and several
seconds for keyword rules over the whole log line). Instead, as IDS engines do:

1. From each rule's condition tree we derive a *necessary* set of ``(field, literal)`` needles:
   if the rule matches an event, at least one needle occurs (case-insensitively) in that
   event's field. OR unions its children's sets, AND picks its most selective child, NOT and
   anything that is not a literal (regex, numbers, CIDR, null) give no guarantee (``None``).
2. All needles of all rules on one field go into one Aho-Corasick automaton, which scans the
   lower-cased column as one contiguous buffer (Arrow's string data) at memory speed.
3. A rule is then evaluated by the store only on its candidate events, or not at all when it
   has none. The store's query stays the judge; the prefilter only skips work, so a rule's
   result is the same with or without it (tests prove it on the real corpora).
"""

from __future__ import annotations

import functools
import re._parser as _sre  # the stdlib's regex parser, to find a regex's required literals
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import ahocorasick_rs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import SigmaRegularExpression, SigmaString

from correlator.sigma.duckdb import KEYWORD_FIELD
from correlator.sigma.pipeline import WEB_FIELD_MAPPING
from marketguard.schema import EVENT_FIELDS

__all__ = ["Needles", "rule_needles", "candidates", "CandidateScan"]

#: A rule's necessary needles: (ECS field, lower-case literal) pairs.
Needles = frozenset[tuple[str, str]]

#: Literals shorter than this match too much to be worth scanning for.
MIN_LITERAL = 3

#: Fields whose values are a few short tokens (GET, POST, api.access…): never selective enough
#: to scan. A rule's other conditions are scanned for instead, or it is queried in full.
UNSELECTIVE_FIELDS = frozenset({"http.request.method", "http.version", "event.dataset", "event.outcome"})

#: ...except for values outside these: a method such as CONNECT or PROPFIND is rare, and the
#: method column is tiny to scan.
COMMON_VALUES = {"http.request.method": frozenset({"get", "post", "put", "patch", "delete", "head", "options"})}

#: A rule with candidates in more than this share of the scanned events is queried in full:
#: fetching most rows by ``_seq`` costs more than one filtered scan. Below it, fetching wins
#: even at 10-20 %: a full scan evaluates every ILIKE of the rule on every row (one rule with
#: 15 user-agent substrings took 6 s in full and 0.12 s on its 10 % of candidates).
MAX_CANDIDATE_SHARE = 0.5


def _literal(value: object) -> str | None:
    """The longest plain run of a Sigma string, lower-cased, if long enough."""
    if not isinstance(value, SigmaString):
        return None
    runs = [part for part in value.s if isinstance(part, str)]
    best = max(runs, key=len, default="")
    return best.lower() if len(best) >= MIN_LITERAL else None


def _literals(value: object) -> frozenset[str] | None:
    if isinstance(value, SigmaRegularExpression):
        return regex_literals(str(value.regexp))
    lit = _literal(value)
    return frozenset({lit}) if lit else None


def _need(node: object) -> Needles | None:
    if isinstance(node, ConditionFieldEqualsValueExpression):
        lits = _literals(node.value)
        field = WEB_FIELD_MAPPING.get(node.field, node.field)
        usable = lits and field in EVENT_FIELDS and (
            field not in UNSELECTIVE_FIELDS
            or not any(c in lit for lit in lits for c in COMMON_VALUES.get(field, {""}))
        )
        return frozenset((field, lit) for lit in lits) if usable else None  # type: ignore[union-attr]
    if isinstance(node, ConditionValueExpression):
        lits = _literals(node.value)
        return frozenset((KEYWORD_FIELD, lit) for lit in lits) if lits else None
    if isinstance(node, ConditionOR):
        parts = [_need(a) for a in node.args]
        if any(p is None for p in parts):
            return None
        return frozenset().union(*parts)  # type: ignore[arg-type]
    if isinstance(node, ConditionAND):
        parts = [p for p in (_need(a) for a in node.args) if p is not None]
        return min(parts, key=_cost) if parts else None
    if isinstance(node, ConditionNOT):
        return None
    return None


def regex_literals(pattern: str) -> frozenset[str] | None:
    """Literals of which at least one occurs in every string the regex matches (lower-cased).

    Small alternations, small character classes (``[;|]``, ``\\d``, ``\\s``) and optional
    parts are expanded into sets of exact strings, so ``(?:;|%3b)(?:\\s|%20)*(?:id|ls)`` gives
    ``{';id', ';ls', '; ', ';%20', '%3bid', …}``: either a separator is followed by a space or
    directly by the command. Anything unparsable gives no literal (``None``).
    """
    try:
        tree = _sre.parse(pattern)
    except Exception:
        return None
    try:
        return _seq(list(tree)).need
    except RecursionError:
        return None


#: Most strings one literal set may hold before it is cut short.
_CAP = 1024
#: Most characters a class may have to be expanded (``\\d`` and ``\\s`` fit, ``\\w`` doesn't).
_CLASS_CAP = 16
_UNKNOWN: frozenset[str] = frozenset({""})
_EMPTY: frozenset[str] = frozenset({""})
_CATEGORY_CHARS = {
    _sre.CATEGORY_DIGIT: "0123456789",
    _sre.CATEGORY_SPACE: " \t\n\r\f\v",
}


class _Lit(NamedTuple):
    """What a regex node tells about the strings it matches (all lower-cased)."""

    exact: frozenset[str] | None  # it matches exactly one of these strings (None: not finite)
    first: frozenset[str]  # every match starts with one of these ({''}: unknown)
    last: frozenset[str]  # every match ends with one of these ({''}: unknown)
    need: frozenset[str] | None  # every match contains one of these (None: unknown)


def _selective(lit: str) -> bool:
    """Whether a literal is rare enough to scan for: 3+ characters, or two punctuation marks
    (``;|``, ``{{``, ``'>``), which ordinary requests seldom hold."""
    return len(lit) >= MIN_LITERAL or (len(lit) == 2 and not any(c.isalnum() for c in lit))


def _usable(lits: frozenset[str] | set[str]) -> bool:
    return bool(lits) and len(lits) <= _CAP and all(_selective(x) for x in lits)


def _best(options: list[frozenset[str]]) -> frozenset[str] | None:
    usable = [o for o in options if _usable(o)]
    return min(usable, key=lambda o: (-min(len(x) for x in o), len(o))) if usable else None


def _product(left: frozenset[str], right: frozenset[str]) -> frozenset[str] | None:
    """All concatenations, or None when there would be more than :data:`_CAP`."""
    if len(left) * len(right) > _CAP:
        return None
    return frozenset(a + b for a in left for b in right)


def _union_lits(parts: list[frozenset[str]]) -> frozenset[str]:
    out = frozenset().union(*parts)
    return out if len(out) <= _CAP else _UNKNOWN


def _class_chars(items: list[tuple[object, object]]) -> frozenset[str] | None:
    chars: set[str] = set()
    for op, av in items:
        if op is _sre.LITERAL:
            chars.add(chr(av).lower())  # type: ignore[arg-type]
        elif op is _sre.RANGE and av[1] - av[0] < _CLASS_CAP:  # type: ignore[index,operator]
            chars.update(chr(c).lower() for c in range(av[0], av[1] + 1))  # type: ignore[index,operator]
        elif op is _sre.CATEGORY and av in _CATEGORY_CHARS:
            chars.update(_CATEGORY_CHARS[av])  # type: ignore[index]
        else:  # NEGATE, \\w, a wide range…
            return None
        if len(chars) > _CLASS_CAP:
            return None
    return frozenset(chars)


def _node(op: object, av: object) -> _Lit:
    if op is _sre.LITERAL:
        one = frozenset({chr(av).lower()})  # type: ignore[arg-type]
        return _Lit(one, one, one, None)
    if op is _sre.IN:
        chars = _class_chars(av)  # type: ignore[arg-type]
        return _Lit(chars, chars, chars, None) if chars else _Lit(None, _UNKNOWN, _UNKNOWN, None)
    if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):  # zero-width
        return _Lit(_EMPTY, _UNKNOWN, _UNKNOWN, None)
    if op is _sre.SUBPATTERN:
        return _seq(list(av[-1]))  # type: ignore[index]
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return _seq(list(av))  # type: ignore[arg-type]
    if op is _sre.BRANCH:
        alts = [_seq(list(a)) for a in av[1]]  # type: ignore[index]
        exacts = [a.exact for a in alts]
        exact = _union_lits(exacts) if all(e is not None for e in exacts) else None  # type: ignore[misc]
        needs = [a.need if a.need is not None else (a.exact if a.exact and _usable(a.exact) else None) for a in alts]
        need = _union_lits(needs) if all(n is not None for n in needs) else None  # type: ignore[misc]
        return _Lit(
            None if exact == _UNKNOWN else exact,
            _union_lits([a.first for a in alts]),
            _union_lits([a.last for a in alts]),
            need if need and _usable(need) else None,
        )
    return _Lit(None, _UNKNOWN, _UNKNOWN, None)  # ANY, NOT_LITERAL, back-references…


class _Run:
    """Necessary literal sets of a regex sequence, built left to right.

    Invariant: every match of the items seen so far either contains a string of ``closed``, or
    ends with a string of ``open``. Exact items extend ``open``; an item repeated zero or more
    times moves ``open`` × its first strings into ``closed`` (a match that repeats it at least
    once contains one of those) and leaves ``open`` for the matches that skip it. Anything
    else ends the run: ``closed`` (plus ``open``) is one necessary set, and a new run starts.
    """

    def __init__(self) -> None:
        self.options: list[frozenset[str]] = []
        self.closed: frozenset[str] = frozenset()
        self.open: frozenset[str] = _EMPTY
        self.tail: frozenset[str] = _EMPTY
        self.exact = True
        self.first: frozenset[str] | None = None

    def _restart(self, option: frozenset[str], open_: frozenset[str]) -> None:
        if self.first is None:
            self.first = option if len(option) <= _CAP else _UNKNOWN
        self.options.append(option)
        self.closed, self.open, self.exact = frozenset(), open_, False

    def literal(self, strings: frozenset[str]) -> None:
        if "" in strings:  # what has been seen so far may be all there is
            self.options.append(self.closed | self.open)
        tail = _product(self.tail, strings)
        self.tail = tail if tail is not None else strings
        grown = _product(self.open, strings)
        if grown is None:
            self._restart(self.closed | self.open, strings)
        else:
            self.open = grown

    def maybe_more(self, sub: _Lit) -> None:
        """Zero or more further matches of ``sub``."""
        self.options.append(self.closed | self.open)
        self.exact = False
        add = _product(self.open, sub.first)
        self.closed = self.closed | (add if add is not None else self.open)
        self.tail = _union_lits([self.tail, sub.last])

    def opaque(self, sub: _Lit) -> None:
        """One match of something that is not a small set of strings."""
        add = _product(self.open, sub.first)
        self._restart(self.closed | (add if add is not None else self.open), sub.last)
        self.tail = sub.last
        if sub.need is not None:
            self.options.append(sub.need)

    def result(self) -> _Lit:
        final = self.closed | self.open
        first = self.first if self.first is not None else (final if len(final) <= _CAP else _UNKNOWN)
        exact = self.open if self.exact else None
        return _Lit(exact, first, self.tail, _best([*self.options, final]))


def _seq(items: list[tuple[object, object]]) -> _Lit:
    run = _Run()
    for op, av in items:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            low, high, body = av  # type: ignore[misc]
            sub = _seq(list(body))
            copies = min(low, 4)
            for _ in range(copies):
                if sub.exact is not None:
                    run.literal(sub.exact)
                else:
                    run.opaque(sub)
            if high > copies and sub.exact is not None and high - copies <= 2:
                optional = _EMPTY | sub.exact  # x? and x{0,2} stay finite
                if high - copies == 2:
                    optional |= _product(sub.exact, sub.exact) or _UNKNOWN
                run.literal(optional)
            elif high > copies:
                run.maybe_more(sub)
            continue
        sub = _node(op, av)
        if sub.exact is not None:
            run.literal(sub.exact)
        else:
            run.opaque(sub)
    return run.result()


def _cost(needles: Needles) -> tuple[int, int]:
    """Longer (then fewer) needles are more selective."""
    return (-min(len(lit) for _, lit in needles), len(needles))


def rule_needles(rule: SigmaRule) -> Needles | None:
    """Necessary needles of a Sigma rule, or None when no literal is guaranteed to occur."""
    total: set[tuple[str, str]] = set()
    for condition in rule.detection.parsed_condition:
        need = _need(condition.parse())
        if need is None:
            return None
        total |= need
    return frozenset(total) if total else None


def candidates(
    batches: Iterable[pa.RecordBatch], needles: Mapping[str, Needles], *, threads: int = 2
) -> dict[str, np.ndarray]:
    """Scan record batches (``_seq`` plus needle fields) and return rule id -> candidate ``_seq``s.

    A rule left out of the result (too many candidates to be worth it) is to be queried in full.
    """
    scan = CandidateScan(needles, threads=threads)
    try:
        for batch in batches:
            scan.feed(batch.column(batch.schema.get_field_index("_seq")), batch)
        return scan.result()
    finally:
        scan.close()


class CandidateScan:
    """An incremental prefilter scan: feed batches of events as they come, then ask the result.

    Each (batch, field) pair is one task on a small thread pool (lower-casing and the automaton
    release the GIL), at most two per thread in flight, so memory stays bounded and the caller
    (say, a hunt still parsing and storing the next batch) goes on meanwhile.
    """

    def __init__(self, needles: Mapping[str, Needles], *, threads: int = 2) -> None:
        self._needles = dict(needles)
        by_field: dict[str, dict[str, None]] = {}  # insertion-ordered sets
        for need in self._needles.values():
            for field, lit in need:
                by_field.setdefault(field, {})[lit] = None
        self._by_field = {f: list(lits) for f, lits in by_field.items()}
        self._automata = {f: _automaton(lits) for f, lits in self._by_field.items()}
        self._found: dict[tuple[str, str], list[np.ndarray]] = {}
        self._scanned = 0
        self._threads = max(1, threads)
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="prefilter")
        self._pending: deque[tuple[str, np.ndarray, Future[list[tuple[int, np.ndarray]]]]] = deque()

    @property
    def fields(self) -> list[str]:
        """The event fields this scan reads."""
        return sorted(self._by_field)

    def feed(self, seqs: pa.Array | np.ndarray, batch: pa.RecordBatch | pa.Table) -> None:
        """Scan the needle fields of ``batch``, whose row ``i`` has ingest sequence ``seqs[i]``."""
        if isinstance(seqs, (pa.Array, pa.ChunkedArray)):
            seqs = seqs.to_numpy(zero_copy_only=False)
        self._scanned += len(seqs)
        for field, automaton in self._automata.items():
            column = batch.column(batch.schema.get_field_index(field))
            self._pending.append((field, seqs, self._pool.submit(_scan, column, automaton)))
            while len(self._pending) > 2 * self._threads:
                self._collect()

    def _collect(self) -> None:
        field, seqs, future = self._pending.popleft()
        lits = self._by_field[field]
        for idx, rows in future.result():
            self._found.setdefault((field, lits[idx]), []).append(seqs[rows])

    def result(self) -> dict[str, np.ndarray]:
        """Rule id -> sorted candidate ``_seq``s; rules left out are to be queried in full."""
        while self._pending:
            self._collect()
        out = {rid: _union(self._found, need) for rid, need in self._needles.items()}
        most = max(MAX_CANDIDATE_SHARE * self._scanned, 1000)
        return {rid: c for rid, c in out.items() if len(c) <= most}

    def close(self) -> None:
        """Stop the worker threads (pending work is dropped)."""
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


def _automaton(lits: Sequence[str]) -> ahocorasick_rs.BytesAhoCorasick:
    """One field's automaton, built once per list of literals: the live engine scans for the
    same literals every cycle, and building the DFAs of the web rules took about 25 ms."""
    return _built(tuple(lits))


@functools.lru_cache(maxsize=64)
def _built(lits: tuple[str, ...]) -> ahocorasick_rs.BytesAhoCorasick:
    patterns = [lit.encode() for lit in lits]
    try:  # a DFA scans about twice as fast as the default NFA
        return ahocorasick_rs.BytesAhoCorasick(patterns, implementation=ahocorasick_rs.Implementation.DFA)
    except Exception:  # too many states for a DFA: the NFA has no such limit
        return ahocorasick_rs.BytesAhoCorasick(patterns)


def _haystack(lowered: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """The bytes of a string array's rows (one contiguous buffer), its offsets, and the start."""
    offsets_buf, data_buf = lowered.buffers()[1], lowered.buffers()[2]
    wide = pa.types.is_large_string(lowered.type)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64 if wide else np.int32)
    offsets = offsets[lowered.offset : lowered.offset + len(lowered) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data[start:end], offsets, start


def _scan(column: pa.Array, automaton: ahocorasick_rs.BytesAhoCorasick) -> list[tuple[int, np.ndarray]]:
    """Rows holding each needle, lower-cased the way the needles were (``str.lower``).

    ASCII text (the usual case) takes Arrow's ASCII path, 20x faster than Unicode's. Text with
    other characters is lower-cased as Unicode, and the long s, which RE2's ``(?i)`` folds with
    's' but which lower-cases to itself, becomes 's' (the Kelvin sign lower-cases to 'k').
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type == pa.string_view():
        column = column.cast(pa.large_string())
    if len(column) == 0:
        return []
    haystack, offsets, start = _haystack(pc.ascii_lower(column))
    if len(haystack) and int(haystack.max()) >= 0x80:
        haystack, offsets, start = _haystack(pc.replace_substring(pc.utf8_lower(column), "\u017f", "s"))
    if len(haystack) == 0:
        return []
    hits = automaton.find_matches_as_indexes(haystack, overlapping=True)
    if not hits:
        return []
    arr = np.asarray(hits, dtype=np.int64)
    rows = np.searchsorted(offsets, arr[:, 1] + start, side="right") - 1
    order = np.lexsort((rows, arr[:, 0]))
    pattern, rows = arr[order, 0], rows[order]
    cuts = np.flatnonzero(np.diff(pattern)) + 1
    return [
        (int(group[0]), np.unique(rowgroup))
        for group, rowgroup in zip(np.split(pattern, cuts), np.split(rows, cuts), strict=True)
    ]


def _union(found: Mapping[tuple[str, str], Sequence[np.ndarray]], need: Needles) -> np.ndarray:
    parts = [a for key in need for a in found.get(key, ())]
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))
