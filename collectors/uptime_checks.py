"""One probe attempt per monitor kind (HTTP request, TCP connect, TLS handshake), each within
the monitor's ``timeout_s``, as a dict: ``up``, ``duration_s``, ``error`` and what it read."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509

from collectors.uptime_monitors import HttpMonitor, TcpMonitor, TlsMonitor

__all__ = ["check_http", "check_tcp", "check_tls"]


_MAX_BODY = 1024 * 1024  # bytes of an HTTP body searched for the keyword


def check_http(m: HttpMonitor) -> dict[str, Any]:
    """One HTTP attempt: status, keyword and latency checks within ``timeout_s``."""
    t0 = time.monotonic()
    deadline = t0 + m.timeout_s
    out: dict[str, Any] = {"up": False}
    try:
        with httpx.Client(verify=m.verify_tls, timeout=m.timeout_s, headers={"User-Agent": "MarketGuard-Prober/1"}) as client:
            with client.stream(m.method, m.url) as response:
                out["status_code"] = response.status_code
                out["not_after"] = _stream_not_after(response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("body not read in time")
                    if len(body) >= _MAX_BODY:
                        break
    except httpx.TimeoutException as exc:
        return {**out, **_down(t0, f"timeout after {m.timeout_s:g} s ({type(exc).__name__})")}
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return {**out, **_down(t0, f"request failed: {_short(exc)}")}
    duration = time.monotonic() - t0
    out["duration_s"] = duration
    out["error"] = _http_problem(m, out["status_code"], bytes(body), duration)
    out["up"] = out["error"] is None
    return out


def _http_problem(m: HttpMonitor, code: int, body: bytes, duration: float) -> str | None:
    if m.expected_status and code not in m.expected_status:
        return f"status {code} not in expected_status {m.expected_status}"
    if not m.expected_status and not 200 <= code < 400:
        return f"status {code} is not 2xx/3xx"
    if m.body_keyword is not None and m.body_keyword.encode() not in body:
        return f"body keyword {m.body_keyword!r} not found"
    if m.max_latency_ms is not None and duration * 1000 > m.max_latency_ms:
        return f"latency {duration * 1000:.0f} ms above max_latency_ms {m.max_latency_ms:g}"
    return None


def _stream_not_after(response: httpx.Response) -> datetime | None:
    """The server certificate's expiry of an HTTPS response (best effort: None if unknown)."""
    try:
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        return None
    return _not_after(der) if der else None


def check_tcp(m: TcpMonitor) -> dict[str, Any]:
    """One TCP connect attempt within ``timeout_s``."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((m.host, m.port), timeout=m.timeout_s):
            pass
    except TimeoutError:
        return _down(t0, f"connect timeout after {m.timeout_s:g} s")
    except OSError as exc:
        return _down(t0, f"connect failed: {_short(exc)}")
    return {"up": True, "duration_s": time.monotonic() - t0}


def check_tls(m: TlsMonitor) -> dict[str, Any]:
    """One TLS handshake: certificate expiry (always read) and trust (with ``verify``)."""
    t0 = time.monotonic()
    error = None
    try:
        try:
            der = _handshake(m, verify=m.verify)
        except ssl.SSLCertVerificationError as exc:
            error = f"certificate verify failed: {exc.verify_message}"
            der = _handshake(m, verify=False)
    except TimeoutError:
        return _down(t0, f"handshake timeout after {m.timeout_s:g} s")
    except (OSError, ssl.SSLError) as exc:
        return _down(t0, f"TLS handshake failed: {_short(exc)}")
    duration = time.monotonic() - t0
    not_after = _not_after(der) if der else None
    if not_after is not None and not_after <= datetime.now(UTC):
        error = f"certificate expired at {not_after.isoformat()}"
    elif not_after is None and error is None:
        error = "server sent no certificate"
    return {"up": error is None, "duration_s": duration, "not_after": not_after, "error": error}


def _handshake(m: TlsMonitor, *, verify: bool) -> bytes | None:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((m.host, m.port), timeout=m.timeout_s) as sock:
        with context.wrap_socket(sock, server_hostname=m.server_name or m.host) as tls:
            return tls.getpeercert(binary_form=True)


def _not_after(der: bytes) -> datetime | None:
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."



def _down(t0: float, error: str) -> dict[str, Any]:
    """A failed attempt that began at ``t0`` (monotonic seconds)."""
    return {"up": False, "duration_s": time.monotonic() - t0, "error": error}
