"""Sigma support: the field-mapping pipeline and one query backend per store dialect."""

from correlator.sigma.duckdb import DuckDBBackend
from correlator.sigma.elasticsearch import ElasticsearchBackend
from correlator.sigma.pipeline import WEB_FIELD_MAPPING, marketguard_pipeline

#: Store dialect -> pySigma backend class. The store says its dialect; nothing else chooses.
BACKENDS = {"duckdb": DuckDBBackend, "elasticsearch": ElasticsearchBackend}

__all__ = ["BACKENDS", "DuckDBBackend", "ElasticsearchBackend", "WEB_FIELD_MAPPING", "marketguard_pipeline"]
