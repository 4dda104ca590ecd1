"""Uptime monitors against real local servers (HTTP, TCP, TLS with generated certificates)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from collectors.accesslog import ParsedBatch
from collectors.uptime import HttpMonitor, Prober, TcpMonitor, TlsMonitor, load_monitors, probe
from marketguard.config import load_settings
from marketguard.errors import ConfigError
from marketguard.metrics import make_metrics
from marketguard.schema import EVENT_SCHEMA
from marketguard.store import MatchWindow, open_store

NOW = dt.datetime.now(dt.UTC)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.rsplit("/", 1)[-1]))
        code = 500 if self.path == "/fail" else 200
        body = b"status: healthy" if self.path != "/other" else b"maintenance page"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that refuse our test certificates end the handshake abruptly


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def http_port() -> Iterator[int]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    yield from _serve(server)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificate(tmp: Path, name: str, not_before: dt.datetime, not_after: dt.datetime) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
    return context


def _tls_server(context: ssl.SSLContext) -> Iterator[int]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    yield from _serve(server)


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[int]:
    yield from _tls_server(_certificate(tmp_path, "valid", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=90)))


@pytest.fixture
def expired(tmp_path: Path) -> Iterator[int]:
    yield from _tls_server(_certificate(tmp_path, "expired", NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=2)))


@pytest.fixture
def expiring(tmp_path: Path) -> Iterator[int]:
    yield from _tls_server(_certificate(tmp_path, "soon", NOW - dt.timedelta(days=30), NOW + dt.timedelta(days=3)))


def web(port: int, path: str = "/", **kw: Any) -> HttpMonitor:
    return HttpMonitor(type="http", id="web", url=f"http://127.0.0.1:{port}{path}", **kw)


# -- http -------------------------------------------------------------------------------------
def test_http_up_with_status_keyword_and_latency(http_port: int) -> None:
    r = probe(web(http_port, expected_status=[200], body_keyword="healthy", max_latency_ms=2000))
    assert r.up and r.status_code == 200 and r.error is None and 0 < r.duration_s < 2


def test_http_wrong_status(http_port: int) -> None:
    r = probe(web(http_port, "/fail"))
    assert not r.up and r.status_code == 500 and r.error == "status 500 is not 2xx/3xx"
    r = probe(web(http_port, "/", expected_status=[204]))
    assert not r.up and "not in expected_status [204]" in (r.error or "")


def test_http_wrong_keyword(http_port: int) -> None:
    r = probe(web(http_port, "/other", body_keyword="healthy"))
    assert not r.up and r.status_code == 200 and r.error == "body keyword 'healthy' not found"


def test_http_slow_over_max_latency_and_over_timeout(http_port: int) -> None:
    r = probe(web(http_port, "/slow/0.3", max_latency_ms=100))
    assert not r.up and "above max_latency_ms 100" in (r.error or "")
    t0 = time.monotonic()
    r = probe(web(http_port, "/slow/3", timeout_s=0.3, retries=1))
    assert not r.up and r.error is not None and r.error.startswith("timeout after 0.3 s") and r.attempts == 2
    assert time.monotonic() - t0 < 2  # two hard-limited attempts, not the server's 3 s


def test_http_down_when_nothing_listens() -> None:
    r = probe(web(_closed_port()))
    assert not r.up and r.status_code is None and (r.error or "").startswith("request failed")


def test_https_self_signed_fails_verification_unless_disabled(self_signed: int) -> None:
    monitor = HttpMonitor(type="http", id="s", url=f"https://localhost:{self_signed}/")
    r = probe(monitor)
    assert not r.up and "CERTIFICATE_VERIFY_FAILED" in (r.error or "")
    r = probe(monitor.model_copy(update={"verify_tls": False}))
    assert r.up and r.not_after is not None and r.not_after > NOW + dt.timedelta(days=80)


# -- tcp -------------------------------------------------------------------------------------
def test_tcp_up_and_down() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert probe(TcpMonitor(type="tcp", id="db", host="127.0.0.1", port=port)).up
    r = probe(TcpMonitor(type="tcp", id="db", host="127.0.0.1", port=_closed_port(), timeout_s=1))
    assert not r.up and "connect failed" in (r.error or "")


# -- tls -------------------------------------------------------------------------------------
def tls(port: int, **kw: Any) -> TlsMonitor:
    return TlsMonitor(type="tls", id="cert", host="localhost", port=port, **kw)


def test_tls_self_signed_is_untrusted_but_expiry_is_read(self_signed: int) -> None:
    r = probe(tls(self_signed))
    assert not r.up and "certificate verify failed" in (r.error or "") and "self-signed" in (r.error or "")
    assert r.not_after is not None and r.not_after > NOW + dt.timedelta(days=80)
    r = probe(tls(self_signed, verify=False))
    assert r.up and r.error is None and r.warning is None


def test_tls_expired_certificate_is_down(expired: int) -> None:
    r = probe(tls(expired, verify=False))
    assert not r.up and (r.error or "").startswith("certificate expired at") and r.not_after < NOW  # type: ignore[operator]


def test_tls_expiring_within_warn_days_is_flagged(expiring: int) -> None:
    r = probe(tls(expiring, verify=False, warn_days=7))
    assert r.up and r.warning is not None and "expires in 3.0 days" in r.warning
    assert probe(tls(expiring, verify=False, warn_days=1)).warning is None


def test_tls_nothing_listening() -> None:
    r = probe(tls(_closed_port(), timeout_s=1))
    assert not r.up and "TLS handshake failed" in (r.error or "")


# -- events, metrics, scheduling ----------------------------------------------------------------
def test_prober_writes_events_and_metrics(http_port: int, expiring: int, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    batches: list[ParsedBatch] = []
    monitors = [web(http_port, service="checkout"), web(http_port, "/fail").model_copy(update={"id": "bad"}),
                tls(expiring, verify=False)]  # fmt: skip
    prober = Prober(batches.append, monitors, metrics=metrics, observer="probe-eu-1")
    for m in monitors:
        prober.run(m)
    rows = [r for b in batches for r in b.events.to_pylist()]
    assert all(b.events.schema == EVENT_SCHEMA for b in batches)
    ok, bad, cert = rows
    assert ok["event.dataset"] == "uptime.probe" and ok["monitor.status"] == "up" and ok["service.name"] == "checkout"
    assert ok["url.full"] == f"http://127.0.0.1:{http_port}/" and ok["observer.name"] == "probe-eu-1"
    assert ok["http.response.status_code"] == 200 and ok["event.duration"] > 0 and ok["monitor.type"] == "http"
    assert bad["monitor.status"] == "down" and bad["error.message"] == "status 500 is not 2xx/3xx"
    assert cert["tls.server.x509.not_after"] is not None and "tls.warning" in json.loads(cert["labels"])
    assert registry.get_sample_value("marketguard_probe_success", {"monitor": "web"}) == 1
    assert registry.get_sample_value("marketguard_probe_success", {"monitor": "bad"}) == 0
    assert registry.get_sample_value("marketguard_probe_duration_seconds", {"monitor": "web"}) > 0  # type: ignore[operator]
    left = registry.get_sample_value("marketguard_tls_cert_expiry_seconds", {"monitor": "cert"})
    assert left is not None and 2.9 * 86400 < left < 3.1 * 86400
    store = open_store(load_settings(data_dir=tmp_path))
    try:
        assert store.append_events(batches[0].events) == 1 and store.append_events(batches[0].events) == 0
        assert store.query_events(MatchWindow(dataset="uptime.probe")).num_rows == 1
    finally:
        store.close()


def test_prober_never_raises_when_the_store_refuses(http_port: int) -> None:
    def refuse(batch: ParsedBatch) -> None:
        raise RuntimeError("queue full")

    result = Prober(refuse, [], metrics=make_metrics(CollectorRegistry())).run(web(http_port))
    assert result.up


@pytest.mark.slow
def test_a_slow_monitor_does_not_block_the_others(http_port: int) -> None:
    batches: list[ParsedBatch] = []
    slow = web(http_port, "/slow/2.5", timeout_s=5, interval_s=1).model_copy(update={"id": "slow"})
    fast = web(http_port, interval_s=1).model_copy(update={"id": "fast"})
    prober = Prober(batches.append, [slow, fast], metrics=make_metrics(CollectorRegistry()))
    scheduler = BackgroundScheduler(timezone="UTC")
    jobs = prober.schedule(scheduler)
    assert {j.id for j in jobs} == {"probe:slow", "probe:fast"} and all(j.max_instances == 1 for j in jobs)
    scheduler.start()
    try:
        time.sleep(2.3)
    finally:
        scheduler.shutdown(wait=True)
    ids = [b.events.column("monitor.id")[0].as_py() for b in batches]
    assert ids.count("fast") >= 2 and ids.count("slow") == 1  # one slow run, never overlapping


# -- loading -----------------------------------------------------------------------------------
def test_load_monitors(tmp_path: Path) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text(
        "monitors:\n"
        "  - {id: web, type: http, url: 'https://shop.example/health', expected_status: [200], interval_s: 30}\n"
        "  - {id: db, type: tcp, host: db.internal, port: 5432}\n"
        "  - {id: cert, type: tls, host: shop.example, warn_days: 21}\n"
    )
    web, db, cert = load_monitors(path)
    assert isinstance(web, HttpMonitor) and web.interval_s == 30 and web.verify_tls
    assert isinstance(db, TcpMonitor) and isinstance(cert, TlsMonitor) and cert.port == 443


@pytest.mark.parametrize(("text", "message"), [
    ("- {id: a, type: http}\n", "monitor 0 ('a'): url: Field required"),
    ("- {id: a, type: http, url: 'https://x'}\n- {id: b, type: ftp}\n", "monitor 1 ('b'): "),
    ("- {id: a, type: tcp, host: h, port: 99999}\n", "port: Input should be less than or equal to 65535"),
    ("- {id: a, type: tcp, host: h, port: 1, colour: red}\n", "colour: Extra inputs are not permitted"),
    ("- {id: a, type: tcp, host: h, port: 1}\n- {id: a, type: tcp, host: h, port: 2}\n", "monitor 1 ('a'): duplicate id 'a' (first at monitor 0)"),
    ("monitors: {a: 1}\n", "expected a list of monitors"),
    ("- [unclosed\n", "not valid YAML"),
])  # fmt: skip
def test_load_monitors_reports_file_index_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_monitors(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_load_monitors_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read monitors file"):
        load_monitors(tmp_path / "nope.yaml")


# -- external probe results ----------------------------------------------------------------------
def test_external_probe_results_become_uptime_events() -> None:
    from collectors.privacy import Pseudonymiser
    from collectors.uptime import parse_probe_records

    records = [
        {"@timestamp": "2024-05-01T12:00:00Z", "monitor": {"id": "ext-web", "status": "down", "type": "http"},
         "url.full": "https://shop.example/health", "error.message": "timeout", "observer.name": "probe-us",
         "event.duration": 5_000_000_000, "service.name": "checkout"},
        {"@timestamp": "2024-05-01T12:00:00Z", "monitor.id": "x", "monitor.status": "sideways"},
        {"monitor.id": "y", "monitor.status": "up"},
        {"@timestamp": "2024-05-01T12:00:00Z", "monitor.status": "up"},
    ]  # fmt: skip
    batch = parse_probe_records(records, source="http:probe-us", pseudonymiser=Pseudonymiser(b"k"))
    (row,) = batch.events.to_pylist()
    assert batch.events.schema == EVENT_SCHEMA and row["event.dataset"] == "uptime.probe"
    assert row["monitor.id"] == "ext-web" and row["monitor.status"] == "down" and row["event.outcome"] == "failure"
    assert row["url.domain"] == "shop.example" and row["service.name"] == "checkout"
    reasons = {d.line: d.reason for d in batch.dead_letters}
    assert "monitor.status must be 'up' or 'down', got 'sideways'" in reasons[2]
    assert "missing timestamp" in reasons[3] and "missing monitor.id" in reasons[4]
