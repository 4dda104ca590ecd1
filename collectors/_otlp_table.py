"""Build ``EVENT_SCHEMA`` tables for datasets other than ``api.access``.

:func:`collectors._ecs.rows_to_table` stamps every row ``api.access``; the trace, probe and
support-ticket collectors reuse it and then set their own dataset. (Candidate to move into
``_ecs.finish_table`` as a ``dataset`` parameter.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from collectors._ecs import constant_strings, rows_to_table
from marketguard.schema import EVENT_SCHEMA

__all__ = ["dataset_table"]

_DATASET_COLUMN = EVENT_SCHEMA.get_field_index("event.dataset")


def dataset_table(
    rows: list[dict[str, Any]], *, dataset: str, source: str, ingested: datetime | None = None
) -> pa.Table:
    """An ``EVENT_SCHEMA`` table of ``rows`` (ECS field -> value) whose dataset is ``dataset``."""
    table = rows_to_table(rows, source=source, ingested=ingested)
    column = constant_strings(dataset, table.num_rows)
    return table.set_column(_DATASET_COLUMN, EVENT_SCHEMA.field(_DATASET_COLUMN), column)
