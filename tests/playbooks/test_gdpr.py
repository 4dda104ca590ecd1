"""GDPR Article 33 clock: deadline = awareness + 72 h, idempotent reminders, notification record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _response_fixtures import T0, Response, detection, later

from playbooks.gdpr import GdprClock, GdprError


def clock_of(response: Response) -> GdprClock:
    return response.responders.gdpr  # type: ignore[no-any-return]


def breach(response: Response):  # type: ignore[no-untyped-def]
    return response.world.incident(detection("enum", tags=("attack.collection", "attack.t1213"), source_ip="192.0.2.44"), now=T0)


def test_personal_data_definition(response: Response) -> None:
    gdpr = clock_of(response)
    assert gdpr.involves_personal_data(breach(response))
    stuffing = response.world.incident(detection("cs", tags=("attack.t1110",), source_ip="203.0.113.1", at=later(10)))
    assert not gdpr.involves_personal_data(stuffing)


def test_deadline_is_awareness_plus_72h_with_dpo_ticket(response: Response) -> None:
    detail = breach(response)
    gdpr = clock_of(response)
    record = gdpr.start(detail, actor="playbook:personal-data-exposure")
    assert detail.incident.created == T0
    assert (record.aware_at, record.deadline) == (T0, T0 + timedelta(hours=72))
    ticket = response.world.tickets.get(record.ticket_id or "")
    assert ticket is not None and (ticket.queue, ticket.kind, ticket.priority) == ("operator:dpo", "gdpr_art33", "P1")
    assert ticket.resolve_due == record.deadline and ticket.details["gdpr"]["deadline"] == record.deadline.isoformat()
    again = gdpr.start(detail)
    assert again.ticket_id == record.ticket_id and len(response.world.tickets.list().items) == 1
    assert [e.action for e in response.world.audit.entries()].count("gdpr.clock_start") == 1


def test_reminders_are_raised_once_each_when_due(response: Response) -> None:
    gdpr = clock_of(response)
    record = gdpr.start(breach(response))
    assert gdpr.evaluate(later(23.9)) == []
    assert [r.hours for r in gdpr.evaluate(later(24.5))] == [24.0]
    assert gdpr.evaluate(later(25)) == []
    assert [r.hours for r in gdpr.due(later(70))] == [48.0, 66.0]
    assert [r.hours for r in gdpr.evaluate(later(70))] == [48.0, 66.0]
    final = gdpr.evaluate(later(73))
    assert [r.hours for r in final] == [72.0] and final[0].remaining < timedelta(0)
    assert gdpr.evaluate(later(100)) == []
    ticket = response.world.tickets.get(record.ticket_id or "")
    texts = [c.text for c in ticket.comments] if ticket else []
    assert sum("GDPR Art. 33 reminder" in t for t in texts) == 4 and "has passed" in texts[-1]
    assert len([r for r in response.receiver.requests if r.path == "/email-dpo"]) == 4
    assert [e.action for e in response.world.audit.entries()].count("gdpr.reminder") == 4


def test_notification_record_attached_to_ticket(response: Response) -> None:
    gdpr = clock_of(response)
    record = gdpr.start(breach(response))
    gdpr.evaluate(later(30))
    done = gdpr.record_notification(record.incident_id, notified_at=later(40), authority_ref="CNIL-2026-0042", actor="key:dpo")
    assert done.notified_at == later(40) and done.authority_ref == "CNIL-2026-0042"
    ticket = response.world.tickets.get(record.ticket_id or "")
    assert ticket is not None and ticket.details["gdpr"]["authority_ref"] == "CNIL-2026-0042"
    assert ticket.details["gdpr"]["late"] is False and "CNIL-2026-0042" in ticket.comments[-1].text
    assert gdpr.evaluate(later(80)) == []  # a notified clock raises no more reminders
    assert response.world.audit.entries()[-1].action in ("gdpr.notified", "ticket.comment")


def test_late_notification_needs_documented_reasons(response: Response) -> None:
    gdpr = clock_of(response)
    record = gdpr.start(breach(response))
    with pytest.raises(GdprError, match="requires reasons for the delay"):
        gdpr.record_notification(record.incident_id, notified_at=later(80), authority_ref="ICO-1", actor="key:dpo")
    gdpr.record_delay(record.incident_id, reasons="scope of exposed orders still being established", actor="key:dpo")
    late = gdpr.record_notification(record.incident_id, notified_at=later(80), authority_ref="ICO-1", actor="key:dpo")
    assert late.delay_reasons and late.authority_ref == "ICO-1"
    ticket = response.world.tickets.get(record.ticket_id or "")
    assert ticket is not None and ticket.details["gdpr"]["late"] is True
    with pytest.raises(GdprError, match="no GDPR clock"):
        gdpr.record_delay("in-unknown", reasons="x", actor="key:dpo")


# -- the whole stage through the real service and API -------------------------------------------------
def test_stage_runs_playbook_and_dpo_records_through_api(tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    from _response_fixtures import REPO
    from fastapi.testclient import TestClient

    from marketguard.app.api import create_app
    from marketguard.app.api.routes import gdpr as gdpr_routes
    from marketguard.app.services import build_services
    from marketguard.cases.audit import open_audit
    from marketguard.cases.routing import load_policy
    from marketguard.cases.tickets import open_tickets
    from marketguard.config import load_settings
    from playbooks.stage import build_response

    rules = tmp_path / "rules"
    rules.mkdir()
    services = build_services(load_settings(data_dir=tmp_path / "data", rules_dirs=[rules]), with_engine=False)
    try:
        audit = open_audit(services.store)
        tickets = open_tickets(services.store, audit)
        env = {n: f"{receiver.url}/{n.lower()}" for n in (
            "SLACK_SECOPS_WEBHOOK_URL", "SLACK_FRAUD_WEBHOOK_URL", "SELLER_WEBHOOK_URL", "CONTAINMENT_WEBHOOK_URL",
            "PAGERDUTY_EVENTS_URL", "ALERTMANAGER_URL")}
        env |= {"PAGERDUTY_ROUTING_KEY": "k", "SELLER_WEBHOOK_SECRET": "s", "CONTAINMENT_WEBHOOK_TOKEN": "t", "SMTP_HOST": "127.0.0.1"}
        stage = build_response(services.store, services.cases, tickets, load_policy(REPO / "playbooks" / "routing.yaml"),
                               audit, playbook_dir=REPO / "playbooks", env=env, sleep=lambda _: None)
        services.extras |= {"gdpr": stage.gdpr, "containment": stage.containment}
        recorded = services.cases.record([detection("enum", tags=("attack.collection",), source_ip="192.0.2.44")], now=T0)
        result = stage.runner.run_many(recorded.new_incidents)[0]
        assert result.playbooks == ("personal-data-exposure",)
        assert [s.kind for s in result.failed] == ["notify"]  # e-mail: no SMTP server on 127.0.0.1:587, recorded
        assert "/slack_secops_webhook_url" in [r.path for r in receiver.requests]
        app = create_app(services, manage_lifecycle=False)
        app.include_router(gdpr_routes.router)
        with TestClient(app) as client:
            reader = {"Authorization": f"Bearer {services.keys.create('aud', 'auditor')}"}
            analyst = {"Authorization": f"Bearer {services.keys.create('dpo', 'analyst')}"}
            clocks = client.get("/api/v1/gdpr/clocks", headers=reader).json()
            assert [c["deadline"][:19] for c in clocks] == [(T0 + timedelta(hours=72)).isoformat()[:19]]
            incident = clocks[0]["incident_id"]
            body = {"notified_at": later(90).isoformat(), "authority_ref": "CNIL-77"}
            assert client.post(f"/api/v1/gdpr/clocks/{incident}/notification", json=body, headers=reader).status_code == 403
            late = client.post(f"/api/v1/gdpr/clocks/{incident}/notification", json=body, headers=analyst)
            assert late.status_code == 422 and "reasons for the delay" in late.json()["detail"]
            body["delay_reasons"] = "forensics pending"
            ok = client.post(f"/api/v1/gdpr/clocks/{incident}/notification", json=body, headers=analyst)
            assert ok.status_code == 200 and ok.json()["authority_ref"] == "CNIL-77"
            assert client.get("/api/v1/gdpr/clocks", headers=reader).json() == []
    finally:
        services.close()
