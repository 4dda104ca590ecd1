"""Pseudonymisation of personal data before an event leaves the collector.

E-mail addresses, payment card numbers (Luhn-checked), phone numbers and secrets carried in
URLs, JSON or ``Bearer`` values are replaced by keyed HMAC-SHA256 tokens such as
``<email:1a2b3c4d5e6f7a8b>``. The same value under the same key always gives the same token,
so one person or one leaked secret still correlates across events, but the clear value is never
stored. Values are normalised before hashing (e-mails URL-decoded and lower-cased, card and
phone numbers reduced to their digits) so that ``jane%40Example.com`` and ``jane@example.com``
share a token.

Phone matching is deliberately conservative: a bare run of digits (an order id, a byte count,
a port, a compact timestamp) is never taken for a phone number; only ``+CC…`` international
forms and national forms with a leading ``0`` plus a separator, brackets, or NANP dashes are.

Speed: each kind has its own pattern that starts with a literal or a character class (so the
regex engine can skip ahead) and runs only when a cheap substring test says it may match;
:meth:`Pseudonymiser.column` first lets RE2 pick the few rows that can contain anything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Pseudonymiser", "CANDIDATE_PATTERN", "candidate_mask", "luhn_valid"]

_SECRET_NAMES = (
    "access_token", "refresh_token", "id_token", "client_secret", "api_key", "apikey", "token",
    "key", "password", "passwd", "pwd", "secret", "session_id", "sessionid", "session", "sessid",
    "auth", "signature", "sig",
)  # fmt: skip
_NAMES = "|".join(sorted(_SECRET_NAMES, key=len, reverse=True))
_SEP = r"(?:[ -]|%20)"
_PCT = r"%(?!3[DdFfAa]|26|2[Ff])[0-9A-Fa-f]{2}"  # an encoded char that may sit in an e-mail

# A secret parameter name read backwards from its '=': matched on the reversed string.
_REV_NAME = re.compile(
    r"(?i)(?:\]|d5%)?(?:"
    + "|".join(n[::-1] for n in sorted(_SECRET_NAMES, key=len, reverse=True))
    + r")(?:(?![A-Za-z0-9])|(?=[Bb]5%))"
)
_EQUALS = re.compile(r"=|%3[Dd]")
_QUERY_VALUE = re.compile(r"(?:(?!%26)[^&\s\"'#;<>])+")
_JSON_SECRET = re.compile(
    r"(?i)\"(?:[A-Za-z0-9]+[_.-])*(?:"
    + _NAMES
    + r")\"\s*:\s*\"((?:[^\"\\<]|\\.)(?:[^\"\\]|\\.)*)\""
)
_BEARER = re.compile(r"(?i)bearer(?:\s+|%20|\+)([A-Za-z0-9._~+/=-]{6,})")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_AT = re.compile(r"@|%40")
_LOCAL = re.compile(
    r"(?:(?<=%3[Dd])|(?<=%26)|(?<=%3[Aa])|(?<![\w.%+-]))"
    r"(?:[A-Za-z0-9_+-]|" + _PCT + r")(?:[A-Za-z0-9._+-]|" + _PCT + r"){0,63}$"
)
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.){1,8}"  # bounded: no quadratic backtracking
    r"(?!(?:png|jpe?g|gif|svg|webp|ico|css|js|json|html?|php|xml|txt|map|woff2?)\b)"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(
    r"\d(?<!\d\d)(?:\d{12,18}|\d{3}(?P<s>[ +-]|%20)\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
    r"|\d{3}(?P<a>[ -]|%20)\d{6}(?P=a)\d{5})(?!\d)"
)
_PHONE_INTL = re.compile(
    r"(?:\+(?<![\w+%]\+)|%(?<![\w+%]%)2[Bb])\d(?:(?:[ ()-]|%20){0,3}\d){0,24}+"
)
_PHONE_NATIONAL = re.compile(
    r"(?:\((?<![\w.+/%:-]\()0\d{1,4}\)" + _SEP + r"?|0(?<![\w.+/%:-]0)\d{2,4}" + _SEP + r")"
    r"\d{3,8}(?:" + _SEP + r"\d{2,6})?(?![\w/-])"
)
_PHONE_NANP = re.compile(
    r"(?:\((?<![\w.+/%:-]\()\d{3}\) ?|\d(?<![\w.+/%:-]\d)\d{2}-)\d{3}-\d{4}(?![\w-])"
)

_SEPARATED_CARD = (
    r"\d{4}(?:[ +-]|%20)\d{4}(?:[ +-]|%20)\d{4}|\d{4}(?:[ -]|%20)\d{6}(?:[ -]|%20)\d{5}"
)

#: Each kind of personal data, in priority order (an earlier kind wins an overlap), with an
#: RE2 pattern that matches every string in which that kind's finder would change anything.
_KINDS: tuple[tuple[str, str], ...] = (
    ("query", r"(?i:(?:" + _NAMES + r")(?:\]|%5D)?(?:=|%3D))"),
    ("json", r"(?i:(?:" + _NAMES + r")\"\s*:\s*\")"),
    ("bearer", r"(?i:bearer)(?:\s|%20|\+)"),
    ("jwt", r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\."),
    ("email", r"[A-Za-z0-9._+-](?:@|%40)[A-Za-z0-9]"),
    ("phone_intl", r"(?:\+|%2[Bb])\d(?:(?:[ ()-]|%20){0,3}\d){7}"),
    ("card", r"\d{13}|" + _SEPARATED_CARD),
    ("phone_national", r"\(0\d{1,4}\)|0\d{2,4}(?:[ -]|%20)\d{3}"),
    ("nanp", r"\(\d{3}\) ?\d{3}-\d{4}|\d{3}-\d{3}-\d{4}"),
)
_ALL_KINDS = frozenset(name for name, _ in _KINDS)

#: RE2 pattern (pyarrow.compute) matched by every string :meth:`Pseudonymiser.text` changes;
#: a cheap superset, so rows it does not flag are passed through untouched.
CANDIDATE_PATTERN = "|".join(f"(?:{pattern})" for _, pattern in _KINDS)

Edits = list[tuple[int, int, str]]


_LUHN_SINGLE = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))
_NOT_DIGIT = re.compile(r"\D")
_THREE_DIGITS = re.compile(r"\d{3}")


def luhn_valid(digits: str) -> bool:
    """Return True if the digit string passes the Luhn check used by payment card numbers."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    raw = digits.encode()
    total = sum(raw[-1::-2].translate(_LUHN_SINGLE)) + sum(raw[-2::-2].translate(_LUHN_DOUBLE))
    return total % 10 == 0


class Pseudonymiser:
    """Replace personal data by keyed, deterministic tokens.

    ``key`` is the installation's secret (see :func:`marketguard.config.pseudonymisation_key`);
    without it a token cannot be linked back to a value by hashing likely values.
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("pseudonymisation key must not be empty")
        self._key = bytes(key)
        self._cache: dict[tuple[str, str], str] = {}

    def token(self, kind: str, value: str) -> str:
        """Keyed HMAC-SHA256 pseudonym, e.g. ``<email:1a2b3c4d5e6f7a8b>`` (16 hex chars).

        The same kind, value and key always give the same token.
        """
        cached = self._cache.get((kind, value))
        if cached is None:
            msg = f"{kind}\x1f{value}".encode("utf-8", "surrogatepass")
            cached = f"<{kind}:{hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:16]}>"
            if len(self._cache) < 100_000:
                self._cache[(kind, value)] = cached
        return cached

    def text(self, s: str) -> str:
        """Replace personal data in ``s`` with tokens.

        That is every e-mail address, Luhn-valid card number (13-19 digits, spaces or dashes
        allowed), phone number, and the value of secrets (query-string or JSON parameters named
        like token, api_key, password, session, sig…, and ``Bearer …``). URL-encoded forms
        (``%40``, ``%20``, ``%2B``, ``%3D``) are recognised too. Timestamps, IP addresses,
        ports, byte counts and plain digit ids (failing Luhn, no phone shape) are left alone.
        """
        return self._rewrite(s, _quick_kinds(s)) if s else s

    def column(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Vectorised :meth:`text`: only rows flagged by a cheap RE2 pre-filter are rewritten.

        Each flagged row then runs only the finders whose own RE2 pattern matched it. Returns an
        array of the same length and string type; nulls stay null.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        idx = np.flatnonzero(candidate_mask(values))
        if len(idx) == 0:
            return values
        candidates = values.take(pa.array(idx))
        flags = {
            name: pc.match_substring_regex(candidates, pattern).to_numpy(zero_copy_only=False)
            for name, pattern in _KINDS
        }
        skip = _luhn_screen(candidates, flags)
        changed, news = [], []
        for j, old in enumerate(candidates.to_pylist()):
            if skip[j]:
                continue
            new = self._rewrite(old, frozenset(name for name, f in flags.items() if f[j]))
            if new != old:
                changed.append(idx[j])
                news.append(new)
        if not changed:
            return values
        change_mask = np.zeros(len(values), dtype=bool)
        change_mask[changed] = True
        return pc.replace_with_mask(values, pa.array(change_mask), pa.array(news, values.type))

    def _rewrite(self, s: str, kinds: frozenset[str]) -> str:
        edits: Edits = []
        for name, _ in _KINDS:
            if name in kinds:
                getattr(self, f"_find_{name}")(s, edits)
        if not edits:
            return s
        edits.sort()
        out, pos = [], 0
        for start, end, replacement in edits:
            out += [s[pos:start], replacement]
            pos = end
        out.append(s[pos:])
        return "".join(out)

    def _find_query(self, s: str, edits: Edits) -> None:
        reverse = None
        for eq in _EQUALS.finditer(s):
            reverse = reverse or s[::-1]
            if _REV_NAME.match(reverse, len(s) - eq.start()) is None:
                continue
            value = _QUERY_VALUE.match(s, eq.end())
            if value and not value.group().startswith("<"):
                self._add(edits, value.start(), value.end(), "secret", value.group())

    def _find_json(self, s: str, edits: Edits) -> None:
        for m in _JSON_SECRET.finditer(s):
            self._add(edits, m.start(1), m.end(1), "secret", m.group(1))

    def _find_bearer(self, s: str, edits: Edits) -> None:
        for m in _BEARER.finditer(s):
            self._add(edits, m.start(1), m.end(1), "secret", m.group(1))

    def _find_jwt(self, s: str, edits: Edits) -> None:
        for m in _JWT.finditer(s):
            self._add(edits, m.start(), m.end(), "secret", m.group())

    def _find_email(self, s: str, edits: Edits) -> None:
        for at in _AT.finditer(s):
            domain = _DOMAIN.match(s, at.end())
            local = _LOCAL.search(s, max(0, at.start() - 70), at.start()) if domain else None
            if domain and local:
                value = unquote(s[local.start() : domain.end()]).lower()
                self._add(edits, local.start(), domain.end(), "email", value)

    def _find_phone_intl(self, s: str, edits: Edits) -> None:
        for m in _PHONE_INTL.finditer(s):
            found = _trim_phone(m.group())
            if found is not None and not _word_char_at(s, m.start() + len(found[0])):
                self._add(edits, m.start(), m.start() + len(found[0]), "phone", found[1])

    def _find_card(self, s: str, edits: Edits) -> None:
        for m in _CARD.finditer(s):
            digits = m.group()
            if not digits.isdigit():
                digits = _NOT_DIGIT.sub("", digits.replace("%20", ""))
            if luhn_valid(digits):
                self._add(edits, m.start(), m.end(), "card", digits)

    def _find_phone_national(self, s: str, edits: Edits) -> None:
        self._find_phone(_PHONE_NATIONAL, s, edits)

    def _find_nanp(self, s: str, edits: Edits) -> None:
        self._find_phone(_PHONE_NANP, s, edits)

    def _find_phone(self, pattern: re.Pattern[str], s: str, edits: Edits) -> None:
        for m in pattern.finditer(s):
            digits = re.sub(r"\D", "", m.group().replace("%20", ""))
            if 8 <= len(digits) <= 15:
                self._add(edits, m.start(), m.end(), "phone", digits)

    def _add(self, edits: Edits, start: int, end: int, kind: str, value: str) -> None:
        """Record a replacement unless it overlaps one found earlier (secrets win over e-mails…)."""
        for s0, e0, _ in edits:
            if start < e0 and s0 < end:
                return
        edits.append((start, end, self.token(kind, value)))


def candidate_mask(values: pa.Array) -> np.ndarray:
    """Rows of a string array that may hold personal data (RE2 :data:`CANDIDATE_PATTERN`)."""
    mask = pc.fill_null(pc.match_substring_regex(values, CANDIDATE_PATTERN), False)
    return mask.to_numpy(zero_copy_only=False)


def _quick_kinds(s: str) -> frozenset[str]:
    """The kinds worth looking for in ``s``, from substring tests (a superset, cheap)."""
    kinds = set()
    if "=" in s or "%3" in s:
        kinds.add("query")
    if '"' in s:
        kinds.add("json")
    if "earer" in s or "EARER" in s:
        kinds.add("bearer")
    if "eyJ" in s:
        kinds.add("jwt")
    if "@" in s or "%40" in s:
        kinds.add("email")
    if "+" in s or "%2" in s:
        kinds.add("phone_intl")
    if _THREE_DIGITS.search(s):
        kinds.update(("card", "phone_national", "nanp"))
    return frozenset(kinds)


def _luhn_screen(candidates: pa.Array, flags: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose only candidate is one plain 13+ digit run failing Luhn (an order id, say).

    They are left as they are without running the Python finders.
    """
    skip = np.zeros(len(candidates), dtype=bool)
    only_card = flags["card"] & ~np.any([f for k, f in flags.items() if k != "card"], axis=0)
    rows = np.flatnonzero(only_card)
    if len(rows) == 0:
        return skip
    sub = candidates.take(pa.array(rows))
    single = pc.equal(pc.count_substring_regex(sub, r"\d{13,}"), 1)
    plain = pc.and_(single, pc.invert(pc.match_substring_regex(sub, _SEPARATED_CARD)))
    runs = pc.struct_field(pc.extract_regex(sub, r"(?P<d>\d{13,})"), [0]).to_pylist()
    for j, (is_plain, run) in enumerate(zip(plain.to_pylist(), runs, strict=True)):
        if is_plain and run is not None and (len(run) > 19 or not luhn_valid(run)):
            skip[rows[j]] = True
    return skip


def _trim_phone(span: str) -> tuple[str, str] | None:
    """Cut a '+CC…' span to whole digit groups holding 8-15 digits: (span, '+digits') or None."""
    prefix = 1 if span.startswith("+") else 3
    groups = re.split(r"(?<=\d)(?=[ ()-]|%20)", span[prefix:])
    while groups:
        digits = re.sub(r"\D", "", "".join(groups).replace("%20", ""))
        if len(digits) <= 15:
            return (span[:prefix] + "".join(groups), "+" + digits) if len(digits) >= 8 else None
        groups.pop()
    return None


def _word_char_at(s: str, i: int) -> bool:
    return i < len(s) and (s[i].isalnum() or s[i] == "_")
