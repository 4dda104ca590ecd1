"""Collectors: turn the outside world (log files, HTTP bodies) into normalised ECS events.

Public entry points for access logs live in :mod:`collectors.accesslog`; personal-data
pseudonymisation in :mod:`collectors.privacy`.
"""

from collectors.accesslog import (
    ParsedBatch,
    detect_format,
    parse_lines,
    parse_records,
    read_access_log,
)
from collectors.privacy import Pseudonymiser

__all__ = [
    "ParsedBatch",
    "Pseudonymiser",
    "detect_format",
    "parse_lines",
    "parse_records",
    "read_access_log",
]
