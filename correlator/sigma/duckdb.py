"""A pySigma backend that turns Sigma detections into DuckDB SQL boolean expressions.

It starts from pySigma's SQLite backend and changes what DuckDB does differently:

* Sigma string matching is case-insensitive, DuckDB's ``LIKE`` and ``=`` are not: every
  string match becomes ``ILIKE`` (equality included); ``|cased`` uses ``GLOB``.
* Regular expressions use ``regexp_matches`` (RE2).
* Numeric columns compared with strings are cast to text; string columns compared with
  numbers compare text, so a rule never raises a conversion error at run time.
* Value-only (keyword) detections, which the SQLite backend refuses, search the original
  log line kept (pseudonymised) in ``event.original``.
* A field outside the event schema is read from the ``labels`` JSON column.
* ``not`` treats a null (absent) field as not matching, as a document store does.

The result of a conversion is a boolean expression over the ``events`` table; the store
adds the time window and the columns it needs.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pyarrow as pa
from sigma.backends.sqlite import sqliteBackend
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionValueExpression
from sigma.conversion.state import ConversionState
from sigma.types import SigmaString, SpecialChars, TimestampPart

from marketguard.schema import EVENT_FIELDS

__all__ = ["DuckDBBackend", "KEYWORD_FIELD"]

#: Where value-only (keyword) detections look: the original log line.
KEYWORD_FIELD = "event.original"

_TEXT_TYPES = {n for n, t in EVENT_FIELDS.items() if pa.types.is_string(t)}


class DuckDBBackend(sqliteBackend):
    """Sigma to DuckDB SQL, with Sigma's case-insensitive semantics."""

    name: ClassVar[str] = "MarketGuard DuckDB backend"
    field_quote: ClassVar[str] = '"'
    field_quote_pattern: ClassVar[re.Pattern[str]] = re.compile("^[a-z_][a-z0-9_]*$")

    _match: ClassVar[str] = "{field} ILIKE {value} ESCAPE '\\'"
    startswith_expression: ClassVar[str] = _match
    endswith_expression: ClassVar[str] = _match
    contains_expression: ClassVar[str] = _match
    wildcard_match_expression: ClassVar[str] = _match
    wildcard_match_str_expression: ClassVar[str] = _match
    re_expression: ClassVar[str] = "regexp_matches({field}, '{regex}')"
    field_exists_expression: ClassVar[str] = "{field} IS NOT NULL"
    field_not_exists_expression: ClassVar[str] = "{field} IS NULL"
    field_timestamp_part_expression: ClassVar[str] = "date_part('{timestamp_part}', {field})"
    timestamp_part_mapping: ClassVar[dict[TimestampPart, str]] = {
        TimestampPart.MINUTE: "minute",
        TimestampPart.HOUR: "hour",
        TimestampPart.DAY: "day",
        TimestampPart.WEEK: "week",
        TimestampPart.MONTH: "month",
        TimestampPart.YEAR: "year",
    }

    # -- fields ---------------------------------------------------------------------------
    def escape_and_quote_field(self, field_name: str) -> str:
        """Quote schema columns; read any other field from the ``labels`` JSON object."""
        if field_name in EVENT_FIELDS:
            return '"' + field_name.replace('"', '""') + '"'
        key = field_name.replace("'", "''").replace('"', '\\"')
        return f"json_extract_string(\"labels\", '$.\"{key}\"')"

    def _text_field(self, field_name: str) -> str:
        quoted = self.escape_and_quote_field(field_name)
        if field_name in EVENT_FIELDS and field_name not in _TEXT_TYPES:
            return f"CAST({quoted} AS VARCHAR)"
        return quoted

    # -- values ---------------------------------------------------------------------------
    def _like_pattern(self, value: SigmaString) -> str:
        converted = value.convert(
            escape_char="\\",
            wildcard_multi="%",
            wildcard_single="_",
            add_escaped="\\",
            filter_chars="",
        )
        return "'" + converted.replace("'", "''") + "'"

    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        """Field matches a string (plain, prefix, suffix, contains or wildcard): ``ILIKE``."""
        return self._match.format(
            field=self._text_field(cond.field), value=self._like_pattern(cond.value)
        )

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        """Field equals a number: numeric on numeric columns, text equality otherwise."""
        if cond.field in EVENT_FIELDS and cond.field not in _TEXT_TYPES:
            return f"{self.escape_and_quote_field(cond.field)} = {cond.value}"
        return f"{self._text_field(cond.field)} = '{cond.value}'"

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        """Field matches a regular expression (RE2 syntax, flags as an inline group)."""
        return self.re_expression.format(
            field=self._text_field(cond.field),
            regex=self.convert_value_re(cond.value, state),
        )

    def convert_condition_val_str(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Keyword detection: the value anywhere in the original log line."""
        value = cond.value
        if not value.startswith(SpecialChars.WILDCARD_MULTI):
            value = SpecialChars.WILDCARD_MULTI + value
        if not value.endswith(SpecialChars.WILDCARD_MULTI):
            value = value + SpecialChars.WILDCARD_MULTI
        return self._match.format(
            field=self.escape_and_quote_field(KEYWORD_FIELD), value=self._like_pattern(value)
        )

    def convert_condition_val_num(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Numeric keyword: searched as text in the original log line."""
        return self.convert_condition_val_str(
            ConditionValueExpression(SigmaString(str(cond.value))), state
        )

    def convert_condition_val_re(self, cond: ConditionValueExpression, state: ConversionState) -> Any:
        """Regular-expression keyword over the original log line."""
        return self.re_expression.format(
            field=self.escape_and_quote_field(KEYWORD_FIELD),
            regex=self.convert_value_re(cond.value, state),
        )

    def convert_condition_not(self, cond: Any, state: ConversionState) -> Any:
        """``not x`` holds when x is not true: a null field does not match a filter.

        Plain SQL ``NOT (NULL ILIKE …)`` is NULL, which would silently drop every event whose
        filtered field is absent (a ``-`` user agent, say), unlike Elasticsearch.
        """
        inner = self.convert_condition(cond.args[0], state)
        return f"({inner}) IS NOT TRUE"

    def finalize_query_default(self, rule: Any, query: str, index: int, state: ConversionState) -> Any:
        """Return the bare boolean expression; the store adds table, window and columns."""
        return query
