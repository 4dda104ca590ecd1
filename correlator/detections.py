"""Detections are a core type (the cases module records them); re-exported here for the correlator."""

from marketguard.detections import EVIDENCE_FIELDS, Detection

__all__ = ["Detection", "EVIDENCE_FIELDS"]
