"""Cleaning up after a test store on a shared cluster."""

from __future__ import annotations

__all__ = ["drop_prefix"]


def drop_prefix(client: object, prefix: str) -> None:
    """Delete every index, data stream and template a test store created."""
    es = client  # type: ignore[assignment]
    for call in (
        lambda: es.indices.delete_data_stream(name=f"{prefix}-*"),  # type: ignore[attr-defined]
        lambda: es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True),  # type: ignore[attr-defined]
        lambda: es.indices.delete_index_template(name=f"{prefix}-events"),  # type: ignore[attr-defined]
        lambda: es.cluster.delete_component_template(name=f"{prefix}-settings,{prefix}-events-mappings"),  # type: ignore[attr-defined]
        lambda: es.ilm.delete_lifecycle(name=f"{prefix}-events"),  # type: ignore[attr-defined]
    ):
        try:
            call()
        except Exception:  # noqa: BLE001 - best-effort cleanup; osmem lacks some of these APIs
            pass
