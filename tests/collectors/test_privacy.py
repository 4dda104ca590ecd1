"""Pseudonymisation: what is replaced, what must survive, and the vectorised path."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from collectors.privacy import CANDIDATE_PATTERN, Pseudonymiser, luhn_valid

TOKEN = r"<(?:email|card|phone|secret):[0-9a-f]{16}>"


@pytest.fixture
def p() -> Pseudonymiser:
    return Pseudonymiser(b"test-key")


def test_token_is_keyed_deterministic_and_shaped(p: Pseudonymiser) -> None:
    a = p.token("email", "jane@example.com")
    assert re.fullmatch(r"<email:[0-9a-f]{16}>", a)
    assert p.token("email", "jane@example.com") == a
    assert Pseudonymiser(b"test-key").token("email", "jane@example.com") == a
    assert Pseudonymiser(b"other-key").token("email", "jane@example.com") != a
    assert p.token("phone", "jane@example.com") != a
    assert p.token("email", "john@example.com") != a


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Pseudonymiser(b"")


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("378282246310005", True), ("79927398713", True),
     ("4111111111111112", False), ("1234567812345678", False), ("", False), ("12a4", False)],
)  # fmt: skip
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("mail jane.doe@example.com now", "jane.doe@example.com"),
        ("/reset?email=jane.doe%40example.com&x=1", "jane.doe%40example.com"),
        ("came_from=http%3A//x/%3Femail%3Djane%40x.org%26t%3D1", "jane%40x.org"),
        ("card 4111 1111 1111 1111 ok", "4111 1111 1111 1111"),
        ("card=4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("pan=4111111111111111&x=1", "4111111111111111"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("call +49 151 12345678 today", "+49 151 12345678"),
        ("?phone=%2B4915112345678&a=1", "%2B4915112345678"),
        ("tel 030 1234567", "030 1234567"),
        ("us (555) 123-4567", "(555) 123-4567"),
        ("us 555-123-4567", "555-123-4567"),
        ("?token=abc123&x=1", "abc123"),
        ("?access_token=zz9&client_secret=s3cr3t", "zz9"),
        ("?x_api_key=K123", "K123"),
        ("user[password]=hunter2", "hunter2"),
        ("a=1&Password%3Dhunter2%26b", "hunter2"),
        ("?session_id=s1x&next=/", "s1x"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ("id=eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", "eyJhbGciOi.eyJzdWIiOiIx"),
    ],
)
def test_personal_data_is_replaced(p: Pseudonymiser, text: str, secret: str) -> None:
    out = p.text(text)
    assert secret not in out
    assert re.search(TOKEN, out)
    assert pc.match_substring_regex(pa.array([text]), CANDIDATE_PATTERN)[0].as_py()


@pytest.mark.parametrize(
    "text",
    [
        '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 203023 "-" "Mozilla/5.0"',
        "order=1234567812345678",  # 16 digits, fails Luhn: an order id, not a card
        "/api/orders/20150517100503",  # compact timestamp
        "2024-03-01T10:00:00+01:00",
        "10.0.0.1:8080 and [2001:db8::1]:443",
        "port 65535 bytes 123456789 and 1234567890123456789012",
        "/img/logo@2x.png",
        "/x?q=iphone+12345678",
        "?monkey=1&author=bob&keyboard=us",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0",
    ],
)
def test_non_personal_data_survives(p: Pseudonymiser, text: str) -> None:
    assert p.text(text) == text


def test_same_person_same_token_across_encodings(p: Pseudonymiser) -> None:
    plain = p.text("jane.doe@Example.com")
    encoded = p.text("?e=jane.doe%40example.com")
    assert encoded == "?e=" + plain
    spaced, dashed = p.text("4111 1111 1111 1111"), p.text("4111-1111-1111-1111")
    assert spaced == dashed == p.text("4111111111111111")


def test_phone_with_trailing_digits_keeps_them(p: Pseudonymiser) -> None:
    out = p.text("+49 151 12345678 2015")
    assert out.endswith(" 2015") and "12345678" not in out


def test_column_matches_text_and_keeps_nulls(p: Pseudonymiser) -> None:
    values = [
        "plain line",
        None,
        "mail jane@example.com",
        "order=1234567812345678",
        "card 4111111111111111 and +49 151 12345678",
        "",
    ]
    out = p.column(pa.array(values))
    assert out.to_pylist() == [None if v is None else p.text(v) for v in values]
    assert out.type == pa.string()


def test_column_returns_input_untouched_when_nothing_to_do(p: Pseudonymiser) -> None:
    arr = pa.array(["a", "b", "order=1234567812345678"])
    assert p.column(arr) is arr
