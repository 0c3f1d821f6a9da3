"""Who may talk to the review app, and how a state change proves it came from one of our pages.

* Bound to 127.0.0.1 (the default) without a token: only requests whose ``Host`` is the loopback
  address we bound answer (a DNS-rebinding page in the browser cannot reach us).
* Any other address needs a token: ``/login`` trades it for an HttpOnly, SameSite=Strict cookie
  holding an HMAC of it (the token itself never sits in a cookie or a URL); every other request
  without that cookie gets 401 (pages redirect to ``/login``).
* CSRF: a per-browser session id cookie (HttpOnly, SameSite=Strict); every POST must carry
  ``csrf`` = HMAC(server secret, session id) as a form field or ``X-CSRF-Token`` header, and a
  cross-site ``Origin`` is refused.
* Every response: a strict Content-Security-Policy (nothing inline, nothing from another origin),
  ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
AUTH_COOKIE = "faceset_auth"
SID_COOKIE = "faceset_sid"
OPEN_PATHS = ("/login", "/static/", "/favicon.ico", "/c/")  # /c/<campaign>: the portal (serve/portal.py)


@dataclass
class Guard:
    token: str | None = None  # None: local, no login
    owner_token: str | None = None  # logs in to the owner view (original paths); None: the token does
    allowed_hosts: set[str] | None = None  # Host header values accepted (None: any)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    # -- login ------------------------------------------------------------------------------------
    def login_cookie(self, given: str) -> str | None:
        """The auth cookie value for a correct token (owner or reviewer), else None."""
        given = given or ""
        if self.owner_token and hmac.compare_digest(given.encode(), self.owner_token.encode()):
            return self._mac("owner")
        if self.token and hmac.compare_digest(given.encode(), self.token.encode()):
            return self._mac("owner" if not self.owner_token else "reviewer")
        return None

    def role(self, cookie: str | None) -> str | None:
        """'owner' | 'reviewer' for a valid auth cookie (or always 'owner' without a token), else None."""
        if self.token is None:
            return "owner"
        if not cookie:
            return None
        for role in ("owner", "reviewer"):
            if hmac.compare_digest(cookie.encode(), self._mac(role).encode()):
                return role
        return None

    # -- csrf -------------------------------------------------------------------------------------
    def csrf_for(self, sid: str) -> str:
        return self._mac("csrf", sid)[:40]

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        return bool(sid and given) and hmac.compare_digest(self.csrf_for(sid).encode(), str(given).encode())

    def host_ok(self, host: str | None) -> bool:
        return self.allowed_hosts is None or (host or "").lower() in self.allowed_hosts


def new_sid() -> str:
    return secrets.token_urlsafe(24)


def new_token() -> str:
    return secrets.token_urlsafe(18)
