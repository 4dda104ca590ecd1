"""Translate a Sigma (RE2/Python-style) regular expression into a Lucene regexp.

Sigma's ``|re`` *searches* (the pattern may match anywhere) and understands ``(?:…)``,
``\\d``/``\\s``/``\\w``, ``\\xHH``, anchors and lazy quantifiers. A Lucene regexp always
matches the *whole* term and has none of those. The translation, from Python's own parse tree:

* an unanchored side gets ``.*``; ``^``/``$`` drop it, also inside the alternatives of a
  leading/trailing group (``(?:;|$)`` at the end becomes ``([;].*|())``);
* ``\\b`` is supported at either end next to a word character (``like\\b``);
* classes are written out (ASCII ``\\w`` as in RE2); ``.`` excludes the newline, as in RE2;
* lazy quantifiers match the same strings and become greedy;
* case-insensitive patterns are lower-cased: the fields they run on are indexed lower-cased.
  A case-sensitive pattern that names a letter cannot be honoured on such a field and is
  refused, as are back-references and look-arounds.

Every literal character except ASCII letters and digits is escaped, so none of Lucene's
operators (``@ & ~ < > # "``) can be triggered by accident.
"""

from __future__ import annotations

import re
import re._constants as C  # noqa: N812 - the stdlib parser's opcodes
import re._parser as P  # noqa: N812
from typing import Any

__all__ = ["to_lucene", "RegexNotSupported"]

_WORD = "a-zA-Z0-9_"
_SPACE = " \t\n\r\f\v"
_FREE, _ANCHORED, _INNER = "free", "anchored", "inner"
_BEGIN = {C.AT_BEGINNING, C.AT_BEGINNING_STRING}
_END = {C.AT_END, C.AT_END_STRING}


class RegexNotSupported(ValueError):
    """The pattern uses something a Lucene regexp cannot express exactly."""


def to_lucene(pattern: str, ignore_case: bool = False) -> str:
    """The Lucene regexp matching a whole term iff ``pattern`` matches somewhere in it."""
    try:
        tree = P.parse(pattern)
    except re.error as exc:
        raise RegexNotSupported(f"invalid regular expression: {exc}") from exc
    flags = tree.state.flags
    return _Writer(ignore_case or bool(flags & re.IGNORECASE), bool(flags & re.DOTALL)).seq(list(tree), _FREE, _FREE)


class _Writer:
    def __init__(self, ignore_case: bool, dotall: bool) -> None:
        self.icase = ignore_case
        self.dotall = dotall

    # -- sequences and context ----------------------------------------------------------------
    def seq(self, items: list[Any], lead: str, trail: str) -> str:
        if items and items[0][0] is C.AT and items[0][1] in _BEGIN:
            lead = self._anchor(lead)
            items = items[1:]
        if items and items[-1][0] is C.AT and items[-1][1] in _END:
            trail = self._anchor(trail)
            items = items[:-1]
        prefix = suffix = ""
        if items and items[0][0] is C.AT and items[0][1] is C.AT_BOUNDARY and lead != _INNER:
            self._need_word(items[1:2], 0)
            prefix, items, lead = ("(()|.*[^" + _WORD + "])" if lead == _FREE else ""), items[1:], _INNER
        if items and items[-1][0] is C.AT and items[-1][1] is C.AT_BOUNDARY and trail != _INNER:
            self._need_word(items[-2:-1], -1)
            suffix, items, trail = ("(()|[^" + _WORD + "].*)" if trail == _FREE else ""), items[:-1], _INNER
        if not items:
            body = ".*" if _FREE in (lead, trail) else "()"
        elif len(items) == 1:
            body = self.element(items[0], lead, trail)
        else:
            body = (self.element(items[0], lead, _INNER)
                    + "".join(self.element(x, _INNER, _INNER) for x in items[1:-1])
                    + self.element(items[-1], _INNER, trail))
        return prefix + body + suffix

    @staticmethod
    def _anchor(side: str) -> str:
        if side == _INNER:
            raise RegexNotSupported("an anchor (^ or $) inside the pattern")
        return _ANCHORED

    @staticmethod
    def _need_word(items: list[Any], end: int) -> None:
        if not (items and _word_edge(items[0], end)):
            raise RegexNotSupported("\\b is only supported at either end, next to a word character")

    def element(self, item: Any, lead: str, trail: str) -> str:
        op, av = item
        if _has_anchor(item) and op in (C.SUBPATTERN, C.BRANCH):
            if op is C.BRANCH:
                return "(" + "|".join(self.seq(list(alt), lead, trail) for alt in av[1]) + ")"
            return self._group(av, lambda sub: "(" + self.seq(list(sub), lead, trail) + ")")
        core = self.atom(item)
        return (".*" if lead == _FREE else "") + core + (".*" if trail == _FREE else "")

    def _group(self, av: Any, write: Any) -> str:
        _, add, delete, sub = av
        saved = self.icase
        if add & re.IGNORECASE:
            self.icase = True
        if delete & re.IGNORECASE:
            self.icase = False
        try:
            return str(write(sub))
        finally:
            self.icase = saved

    # -- atoms ---------------------------------------------------------------------------
    def atom(self, item: Any) -> str:
        op, av = item
        if op is C.LITERAL:
            return self._literal(av)
        if op is C.NOT_LITERAL:
            return "[^" + self._class_literal(av) + "]"
        if op is C.ANY:
            return "." if self.dotall else "[^\\\n]"
        if op is C.IN:
            return self._class(av)
        if op is C.BRANCH:
            return "(" + "|".join("(" + "".join(self.atom(x) for x in alt) + ")" for alt in av[1]) + ")"
        if op is C.SUBPATTERN:
            return self._group(av, lambda sub: "(" + ("".join(self.atom(x) for x in sub) or "()") + ")")
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            low, high, sub = av
            body = "(" + ("".join(self.atom(x) for x in sub) or "()") + ")"
            return body + _quantifier(low, high)
        if op is C.AT:
            raise RegexNotSupported("an anchor or \\b inside the pattern")
        raise RegexNotSupported(f"{str(op).lower()} is not supported by Lucene regular expressions")

    def _literal(self, code: int) -> str:
        ch = chr(code)
        if ch.lower() != ch.upper():
            if not self.icase:
                raise RegexNotSupported("a case-sensitive pattern naming letters (fields are indexed lower-cased)")
            ch = ch.lower()
        return _escape(ch)

    def _class_literal(self, code: int) -> str:
        ch = chr(code)
        if ch.lower() != ch.upper():
            if not self.icase:
                raise RegexNotSupported("a case-sensitive pattern naming letters (fields are indexed lower-cased)")
            return _escape(ch.lower()) + _escape(ch.upper())
        return _escape(ch)

    def _class(self, items: list[Any]) -> str:
        negate = bool(items) and items[0][0] is C.NEGATE
        body = items[1:] if negate else items
        if len(body) == 1 and body[0][0] is C.CATEGORY and body[0][1] in _NEGATED:
            if negate:
                raise RegexNotSupported("a negated class of a negated category")
            return "[^" + _CATEGORIES[_NEGATED[body[0][1]]] + "]"
        parts = []
        for op, av in body:
            if op is C.LITERAL:
                parts.append(self._class_literal(av))
            elif op is C.RANGE:
                parts.append(self._range(*av))
            elif op is C.CATEGORY and av in _CATEGORIES:
                parts.append(_CATEGORIES[av])
            else:
                raise RegexNotSupported(f"{str(op).lower()} {av} inside a character class")
        return "[" + ("^" if negate else "") + "".join(parts) + "]"

    def _range(self, low: int, high: int) -> str:
        text = _escape(chr(low)) + "-" + _escape(chr(high))
        letters = any(chr(c).lower() != chr(c).upper() for c in range(low, min(high, 0x24F) + 1))
        if not letters:
            return text
        if not self.icase:
            raise RegexNotSupported("a case-sensitive pattern naming letters (fields are indexed lower-cased)")
        extra = {chr(c).lower() for c in range(low, high + 1) if chr(c).lower() != chr(c)}
        return text + "".join(_escape(ch) for ch in sorted(extra))


_CATEGORIES = {
    C.CATEGORY_DIGIT: "0-9",
    C.CATEGORY_SPACE: "".join("\\" + ch for ch in _SPACE),
    C.CATEGORY_WORD: _WORD,
}
_NEGATED = {
    C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT,
    C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE,
    C.CATEGORY_NOT_WORD: C.CATEGORY_WORD,
}


def _escape(ch: str) -> str:
    return ch if (ch.isascii() and ch.isalnum()) else "\\" + ch


def _quantifier(low: int, high: int) -> str:
    if high == C.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _has_anchor(item: Any) -> bool:
    op, av = item
    if op is C.AT:
        return True
    if op is C.BRANCH:
        return any(_has_anchor(x) for alt in av[1] for x in alt)
    if op is C.SUBPATTERN:
        return any(_has_anchor(x) for x in av[3])
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        return any(_has_anchor(x) for x in av[2])
    return False


def _word_edge(item: Any, end: int) -> bool:
    """Whether every match of ``item`` starts (``end`` 0) or ends (-1) with a word character."""
    op, av = item
    if op is C.LITERAL:
        return chr(av).isalnum() or chr(av) == "_"
    if op is C.BRANCH:
        return all(alt and _word_edge(list(alt)[end], end) for alt in av[1])
    if op is C.SUBPATTERN:
        sub = list(av[3])
        return bool(sub) and _word_edge(sub[end], end)
    return False
