"""Reports: the output stage that turns the stores into documents people sign off.

One model per report (:mod:`.model`), computed from the stores through their protocols
(:mod:`.incident`, :mod:`.compliance`, reading a :class:`.sources.ReportSources`), rendered
as JSON, HTML or PDF (:mod:`.render`, templates in ``templates/``, charts in :mod:`.charts`).
"""

from marketguard.app.reports.compliance import build_compliance_report
from marketguard.app.reports.incident import build_incident_report, record_report_read
from marketguard.app.reports.model import ComplianceReport, IncidentReport, to_json
from marketguard.app.reports.render import FORMATS, MEDIA_TYPES, render, write_report
from marketguard.app.reports.sources import ReportSources, sources_from_services, sources_from_store

__all__ = [
    "build_incident_report", "build_compliance_report", "record_report_read", "IncidentReport",
    "ComplianceReport", "to_json", "render", "write_report", "FORMATS", "MEDIA_TYPES", "ReportSources",
    "sources_from_store", "sources_from_services",
]
