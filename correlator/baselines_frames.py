"""The events the behavioural baselines judge, as pandas frames: reading a window from the
store (schema columns and ``labels`` keys as text), entity keys and ``field: value`` selection."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa

from correlator.baselines_relevance import Relevance
from marketguard.schema import EVENT_FIELDS
from marketguard.store import MatchWindow, Store

__all__ = ["read_events", "entity_keys", "select"]


def read_events(store: Store, window: MatchWindow, fields: list[str], keep: Relevance | None = None) -> pd.DataFrame:
    """``_seq``, ``event.id``, ``@timestamp`` and ``fields`` (schema columns or labels keys) of
    the window's events (only those ``keep`` finds relevant)."""
    schema = [f for f in fields if f in EVENT_FIELDS]
    columns = ["event.id", "@timestamp", "labels", *schema]
    batches = list(store.scan(window, columns))
    table = pa.Table.from_batches(batches) if batches else None
    if table is not None and keep is not None and (mask := keep.mask(table)) is not None:
        table = table.filter(mask)
    if table is not None and table.num_rows:
        frame = table.to_pandas()
    else:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in ["_seq", *columns]})
    frame = frame.sort_values(["@timestamp", "event.id"], kind="stable").reset_index(drop=True)
    labels = [json.loads(x) if isinstance(x, str) else {} for x in frame.pop("labels")]
    for name in fields:
        if name not in EVENT_FIELDS:
            frame[name] = [lab.get(name) for lab in labels]
    for name in fields:
        frame[name] = frame[name].map(_text, na_action="ignore").astype(object)
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], utc=True)
    frame["_t"] = frame["@timestamp"].dt.as_unit("ns").astype("int64")
    return frame


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def entity_keys(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    """One text key per row (JSON list of the entity's field values); rows lacking one are NaN."""
    present = frame[list(names)].notna().all(axis=1).to_numpy()
    columns = [frame[n].to_numpy(dtype=object) for n in names]
    keys = [
        json.dumps(list(vals)) if ok else None for ok, *vals in zip(present, *columns, strict=True)
    ]
    return pd.Series(keys, index=frame.index, dtype=object)


def select(frame: pd.DataFrame, spec: dict[str, str]) -> pd.Series:
    """True for the rows whose every ``field: value`` of ``spec`` holds, ignoring case."""
    mask = pd.Series(True, index=frame.index)
    for name, value in spec.items():
        mask &= frame[name].str.lower() == value.lower()
    return mask.fillna(False).astype(bool)

