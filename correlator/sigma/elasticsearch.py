"""A pySigma backend that turns Sigma detections into Lucene query strings for our ES mapping.

It starts from pySigma's Lucene backend (``sigma.backends.elasticsearch.LuceneBackend``) and
changes what our index mapping (:mod:`marketguard.store.es_setup`) and DuckDB parity need:

* Sigma matching is case-insensitive: text fields are ``keyword`` with a lowercase
  normalizer and every string value is lower-cased here (wildcards included). ``|cased``
  cannot be honoured on such fields and is refused.
* A string compared with a numeric field matches the number's text (``<field>.text``), as
  DuckDB's cast does, so ``sc-status: '5*'`` works and never errors.
* Regular expressions search (unanchored) like RE2; they are translated into Lucene regexps
  by :func:`correlator.sigma._lucene_regex.to_lucene`. A construct that cannot be expressed
  exactly makes the rule fail to compile (reported with the rule's file), never match wrongly.
* Value-only (keyword) detections search the original log line, ``event.original``, not
  every field.
* A field outside the event schema is read from ``labels.<field>``.
* CIDR values on ``source.ip`` (a keyword: addresses may be pseudonymised) become prefix
  wildcards.

The result of a conversion is a query string for ``query_string``; the store adds the window
and the columns.
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

import pyarrow as pa
from sigma.backends.elasticsearch import LuceneBackend
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionValueExpression
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.types import (
    SigmaCasedString,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
)

from correlator.sigma._lucene_regex import RegexNotSupported, to_lucene
from marketguard.schema import EVENT_FIELDS

__all__ = ["ElasticsearchBackend", "KEYWORD_FIELD"]

#: Where value-only (keyword) detections look: the original log line.
KEYWORD_FIELD = "event.original"

_NUMERIC = {n for n, t in EVENT_FIELDS.items() if pa.types.is_integer(t) or pa.types.is_floating(t)}
_TIMESTAMPS = {n for n, t in EVENT_FIELDS.items() if pa.types.is_timestamp(t)}


class ElasticsearchBackend(LuceneBackend):
    """Sigma to a Lucene query string over MarketGuard's Elasticsearch mapping."""

    name: ClassVar[str] = "MarketGuard Elasticsearch backend"
    # Escape everything query_string treats as syntax inside a field name, except the dots.
    field_escape_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[\s*+\-=&|!(){}\[\]^\"~?:\\/<>]")
    convert_or_as_in: ClassVar[bool] = False
    cidr_expression: ClassVar[str | None] = None  # type: ignore[assignment]
    unbound_value_str_expression: ClassVar[str] = KEYWORD_FIELD + ":*{value}*"
    unbound_value_num_expression: ClassVar[str] = KEYWORD_FIELD + ":*{value}*"
    unbound_value_re_expression: ClassVar[str] = KEYWORD_FIELD + ":/{value}/"

    # -- fields ---------------------------------------------------------------------------
    def escape_and_quote_field(self, field_name: str) -> str:
        """Schema fields as they are; any other field under ``labels.``."""
        if field_name not in EVENT_FIELDS and not field_name.endswith(".text"):
            field_name = "labels." + field_name
        return str(super().escape_and_quote_field(field_name))

    # -- values ---------------------------------------------------------------------------
    def convert_value_str(self, s: SigmaString, state: ConversionState) -> str:
        """Lower-case the value: the fields it is compared with are indexed lower-cased."""
        if isinstance(s, SigmaCasedString):
            raise SigmaFeatureNotSupportedByBackendError(
                "|cased: MarketGuard's Elasticsearch fields are indexed lower-cased"
            )
        lowered = copy.copy(s)
        lowered.s = tuple(p.lower() if isinstance(p, str) else p for p in s.s)
        return str(super().convert_value_str(lowered, state))

    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        """A string on a numeric field matches the number's text sub-field."""
        if cond.field in _NUMERIC:
            cond = _with_field(cond, cond.field + ".text")
        elif cond.field in _TIMESTAMPS:
            raise SigmaFeatureNotSupportedByBackendError(f"string match on the timestamp field {cond.field}")
        return super().convert_condition_field_eq_val_str(cond, state)

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        """Field matches a regular expression somewhere (translated for Lucene)."""
        name = cond.field + ".text" if cond.field in _NUMERIC else cond.field
        return f"{self.escape_and_quote_field(name)}:/{_lucene(cond.value)}/"

    def convert_condition_val_str(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Keyword detection: the lower-cased value anywhere in the original log line."""
        if isinstance(cond.value, SigmaCasedString):
            raise SigmaFeatureNotSupportedByBackendError("|cased: fields are indexed lower-cased")
        lowered = copy.copy(cond.value)
        lowered.s = tuple(p.lower() if isinstance(p, str) else p for p in cond.value.s)
        return super().convert_condition_val_str(ConditionValueExpression(lowered), state)

    def convert_condition_val_re(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Regular-expression keyword over the original log line."""
        return self.unbound_value_re_expression.format(value=_lucene(cond.value))

    def convert_condition_val_num(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Numeric keyword: searched as text in the original log line."""
        return self.unbound_value_num_expression.format(value=str(cond.value))

    def finalize_query_default(self, rule: Any, query: str, index: int, state: ConversionState) -> Any:
        """Return the bare query string; the store adds the window and columns."""
        return query


def _with_field(cond: ConditionFieldEqualsValueExpression, field: str) -> ConditionFieldEqualsValueExpression:
    moved = copy.copy(cond)
    moved.field = field
    return moved


def _lucene(value: SigmaRegularExpression) -> str:
    icase = SigmaRegularExpressionFlag.IGNORECASE in (value.flags or set())
    try:
        return to_lucene(str(value.regexp), ignore_case=icase)
    except RegexNotSupported as exc:
        raise SigmaFeatureNotSupportedByBackendError(f"regular expression {value.regexp!r}: {exc}") from exc
