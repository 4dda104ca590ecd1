"""Build ``EVENT_SCHEMA`` tables for datasets other than ``api.access``.

:func:`collectors._ecs.rows_to_table` stamps every row ``api.access``; the probe and
support-ticket collectors reuse it and then set their own dataset. (Candidate to move into
``_ecs.finish_table`` as a ``dataset`` parameter.)

:class:`SpanColumns` is the trace collector's column builder: every span fills the fields all
spans have straight into per-column lists, and only the fields some spans have (HTTP
attributes, errors, labels) are kept sparse, by row. No dict per span, no pass over rows per
column at the end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors._ecs import constant_strings, finish_table, rows_to_table
from collectors.privacy import Pseudonymiser
from marketguard.schema import EVENT_FIELDS, EVENT_SCHEMA

__all__ = ["dataset_table", "SpanColumns"]

_DATASET_COLUMN = EVENT_SCHEMA.get_field_index("event.dataset")
_TIMESTAMP = EVENT_FIELDS["@timestamp"]


def dataset_table(
    rows: list[dict[str, Any]], *, dataset: str, source: str, ingested: datetime | None = None
) -> pa.Table:
    """An ``EVENT_SCHEMA`` table of ``rows`` (ECS field -> value) whose dataset is ``dataset``."""
    table = rows_to_table(rows, source=source, ingested=ingested)
    column = constant_strings(dataset, table.num_rows)
    return table.set_column(_DATASET_COLUMN, EVENT_SCHEMA.field(_DATASET_COLUMN), column)


class SpanColumns:
    """The columns of ``apm.span`` events, filled one span at a time.

    ``private`` names the string columns pseudonymised (column-wise) when the table is built.
    """

    def __init__(self, private: frozenset[str]) -> None:
        self._private = private
        self.micros: list[int] = []  # @timestamp, microseconds since the epoch
        self.ids: list[str] = []
        self.durations: list[int] = []
        self.outcomes: list[str] = []
        self.traces: list[str] = []
        self.spans: list[str] = []
        self.parents: list[str | None] = []
        self.names: list[str] = []
        self.kinds: list[str] = []
        self.services: list[str | None] = []
        self._sparse: dict[str, dict[int, Any]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add_sparse(self, fields: dict[str, Any]) -> None:
        """Set ``fields`` (ECS name -> value) on the row added last."""
        row = len(self.ids) - 1
        sparse = self._sparse
        for name, value in fields.items():
            column = sparse.get(name)
            if column is None:
                column = sparse[name] = {}
            column[row] = value

    def to_table(self, dataset: str, source: str, p: Pseudonymiser, ingested: datetime | None) -> pa.Table:
        """The ``EVENT_SCHEMA`` table of every span added, private columns pseudonymised."""
        n = len(self.ids)
        dense: dict[str, list[Any]] = {
            "event.id": self.ids, "event.duration": self.durations, "event.outcome": self.outcomes,
            "trace.id": self.traces, "span.id": self.spans, "parent.id": self.parents,
            "span.name": self.names, "span.kind": self.kinds, "service.name": self.services,
        }  # fmt: skip
        for name, by_row in self._sparse.items():
            values: list[Any] = [None] * n
            for row, value in by_row.items():
                values[row] = value
            dense[name] = values
        columns: dict[str, pa.Array] = {"@timestamp": pa.array(self.micros, pa.int64()).cast(_TIMESTAMP)}
        for name, values in dense.items():
            array = pa.array(values, EVENT_FIELDS[name])
            columns[name] = _pseudonymised(p, array) if name in self._private else array
        table = finish_table(columns, n, source=source, ingested=ingested)
        return table.set_column(_DATASET_COLUMN, EVENT_SCHEMA.field(_DATASET_COLUMN), constant_strings(dataset, n))


def _pseudonymised(p: Pseudonymiser, values: pa.Array) -> pa.Array:
    """:meth:`Pseudonymiser.column` run once per distinct value when values repeat (span names,
    the labels every span of a service shares); the same result either way."""
    encoded = pc.dictionary_encode(values)
    if 2 * len(encoded.dictionary) > len(values):
        return p.column(values)
    dictionary = p.column(encoded.dictionary)
    return values if dictionary is encoded.dictionary else dictionary.take(encoded.indices)
