"""Every playbook file validates and follows policy; the notifier file loads; errors say where."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marketguard.errors import ConfigError
from playbooks.model import PlaybookError, load_playbook, load_playbooks, playbook_files
from playbooks.notifiers import NOTIFIERS, load_response_config

REPO = Path(__file__).resolve().parents[2]
BOOKS = REPO / "playbooks"
FILES = playbook_files(BOOKS)
NOTIFIER_FILE = BOOKS / "notifiers.yaml"
REQUIRED = {"credential-stuffing", "injection-attacks", "card-testing", "click-fraud", "availability",
            "seller-sla", "personal-data-exposure"}


def _env() -> dict[str, str]:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", NOTIFIER_FILE.read_text()))
    return {n: ("http://127.0.0.1:9/x" if n.endswith("URL") else "test-secret") for n in names}


def _configured_notifiers() -> set[str]:
    _, notifiers = load_response_config(NOTIFIER_FILE, env=_env())
    return set(notifiers)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_playbook_file(path: Path) -> None:
    book = load_playbook(path)
    kinds = [s.kind for s in book.steps]
    problems = []
    first_ticket = kinds.index("open_ticket") if "open_ticket" in kinds else None
    if first_ticket is None:
        problems.append("opens no ticket")
    for i, kind in enumerate(kinds):
        if kind in ("assign", "contain") and (first_ticket is None or i < first_ticket):
            problems.append(f"steps[{i}] {kind} before open_ticket")
    if kinds[-1] != "report":
        problems.append("does not end with a report step")
    names = _configured_notifiers()
    for i, spec in enumerate(book.steps):
        notifier = getattr(spec, "notifier", None)
        if notifier and notifier not in names:
            problems.append(f"steps[{i}] unknown notifier {notifier!r}")
    if not (book.trigger.types or book.trigger.tags_any or book.trigger.rules_any):
        problems.append("trigger matches every incident")
    assert not problems, f"{path}: " + "; ".join(problems)


def test_required_playbooks_are_shipped() -> None:
    assert {b.id for b in load_playbooks(BOOKS)} >= REQUIRED


def test_notifier_file_builds_every_type() -> None:
    config, notifiers = load_response_config(NOTIFIER_FILE, env=_env())
    assert {type(n) for n in notifiers.values()} == set(NOTIFIERS.values())
    assert config.containment is not None and config.retry.attempts >= 2


def test_notifier_file_names_a_missing_secret() -> None:
    env = _env()
    del env["PAGERDUTY_ROUTING_KEY"]
    with pytest.raises(ConfigError, match="PAGERDUTY_ROUTING_KEY is not set"):
        load_response_config(NOTIFIER_FILE, env=env)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yaml"
    path.write_text(text)
    return path


def test_unknown_step_kind_lists_valid_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "id: x1\ntitle: xyz\ntrigger: {types: [security]}\nsteps:\n  - kind: enrich\n  - kind: page_someone\n")
    with pytest.raises(PlaybookError) as err:
        load_playbook(path)
    message = str(err.value)
    assert str(path) in message and "steps[1]" in message
    assert "unknown step kind 'page_someone'" in message and "enrich, open_ticket, assign, notify, contain, gdpr_clock, report" in message


def test_step_errors_name_file_index_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "id: x1\ntitle: xyz\ntrigger: {types: [security]}\nsteps:\n  - kind: open_ticket\n    queue: operator:secops\n  - kind: notify\n    template: hi\n")
    with pytest.raises(PlaybookError, match=r"book.yaml: steps\[1\] \(notify\): notifier: Field required"):
        load_playbook(path)


@pytest.mark.parametrize("step, reason", [
    ("{kind: contain, action: block_ip, target: user.id}", "acts on source.ip"),
    ("{kind: contain, action: nuke}", "action"),
    ("{kind: open_ticket, queue: operator:marketing}", "queue"),
    ("{kind: open_ticket}", "exactly one of"),
    ("{kind: gdpr_clock, reminder_hours: [80]}", "between 0 and 72"),
    ("{kind: enrich, lookback: 5}", "Extra inputs are not permitted"),
])
def test_invalid_steps_are_refused(tmp_path: Path, step: str, reason: str) -> None:
    path = _write(tmp_path, f"id: x1\ntitle: xyz\ntrigger: {{types: [security]}}\nsteps:\n  - {step}\n")
    with pytest.raises(PlaybookError, match=r"steps\[0\]") as err:
        load_playbook(path)
    assert reason in str(err.value)


def test_bad_trigger_and_duplicate_ids(tmp_path: Path) -> None:
    bad = _write(tmp_path, "id: x1\ntitle: xyz\ntrigger: {types: [weather], entity_kinds: [user.name]}\nsteps: [{kind: report}]\n")
    with pytest.raises(PlaybookError, match="unknown incident type"):
        load_playbook(bad)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("id: same\ntitle: xyz\ntrigger: {types: [security]}\nsteps: [{kind: report}]\n")
    bad.unlink()
    with pytest.raises(PlaybookError, match="duplicate playbook id 'same'"):
        load_playbooks(tmp_path)


def test_unset_destinations_can_be_left_out(caplog: pytest.LogCaptureFixture) -> None:
    env = {"SLACK_SECOPS_WEBHOOK_URL": "http://127.0.0.1:9/slack"}
    config, notifiers = load_response_config(NOTIFIER_FILE, env=env, skip_unset=True)
    assert set(notifiers) == {"slack-secops", "alertmanager", "email-dpo"}  # the others need unset secrets
    assert config.containment is None
    assert "notifier pagerduty-oncall disabled" in caplog.text
