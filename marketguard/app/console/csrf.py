"""CSRF protection for the console's forms.

Every form carries a token in a hidden ``csrf`` field; a POST whose token is missing or wrong
is refused with 403 before anything else happens. Signed-in forms use the session's own token
(:attr:`~marketguard.app.console.sessions.Session.csrf`). The sign-in form, which has no session
yet, uses a double-submit token: a random value set in its own HTTP-only ``SameSite=Strict``
cookie and repeated in the form; both must match.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, status

__all__ = ["FIELD", "PRE_COOKIE", "check_csrf"]

#: Name of the hidden form field.
FIELD = "csrf"
#: Cookie of the sign-in form's double-submit token.
PRE_COOKIE = "mg_console_signin"


def check_csrf(expected: str | None, submitted: str | None) -> None:
    """Raise 403 unless ``submitted`` equals the non-empty ``expected`` token (constant time)."""
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the form's security token is missing or wrong; reload the page and try again")
