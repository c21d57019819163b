"""Who may use the console, and how a browser proves it: token file, signed session, CSRF tokens.

The console changes production data, so every page needs an operator:

* ``Authorization: Bearer <token>`` -- scripts and health probes; the token is read from a mounted
  secret file (``--token-file``), compared in constant time, and registered as a secret so that no
  log line can carry it. A bearer request is not a browser's ambient credential, so it needs no
  CSRF token.
* The login form -- the same token plus the operator's name; the answer is a session cookie
  (HttpOnly, SameSite=Strict, Path=/, Secure when served over HTTPS) holding the name and an
  expiry, signed with HMAC-SHA256. The signing key is derived from the token, so every replica
  sharing the token accepts the cookie and rotating the token logs everyone out.
* A trusted proxy header (``--trust-user-header X-Forwarded-User``) -- only when configured; the
  console must then be reachable through the proxy only (NetworkPolicy), because anyone who can
  reach it directly could send the header.

CSRF: every state-changing form carries a token bound to the session (HMAC of the session's
random nonce, or of the proxy user's name), checked in constant time before anything else runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from connector.errors import ConfigError
from connector.logging import register_secret

SESSION_COOKIE: Final = "console_session"
SESSION_SECONDS: Final = 8 * 3600
MAX_OPERATOR_CHARS: Final = 64
_MIN_TOKEN_CHARS: Final = 16


class AuthSetupError(ConfigError):
    """The console cannot authenticate anyone with what it was given (exit code 2)."""

    reason = "console_auth_setup"


def read_token(path: Path) -> str:
    """The bearer token from its file (trailing newline ignored); too short a token is refused."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AuthSetupError(f"cannot read the console token file {path}: {exc.strerror}") from None
    if len(token) < _MIN_TOKEN_CHARS:
        raise AuthSetupError(
            f"the console token in {path} is shorter than {_MIN_TOKEN_CHARS} characters: "
            "generate one with `openssl rand -hex 32`"
        )
    register_secret(token)
    return token


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated operator: the name the audit records, how they proved it, their CSRF token."""

    operator: str
    via: str  # "bearer", "session" or "proxy"
    csrf: str | None  # None for bearer requests (no ambient credential to forge)


class Authenticator:
    """Checks requests against the token / session / trusted header; issues sessions and CSRF tokens."""

    def __init__(self, *, token: str | None, trust_user_header: str | None) -> None:
        if token is None and trust_user_header is None:
            raise AuthSetupError("the console needs --token-file or --trust-user-header (or both)")
        self._token = token.encode() if token is not None else None
        self.trust_user_header = trust_user_header
        # From the token: replicas agree and a rotated token voids every session. Without a token
        # (proxy only) a key of this process: CSRF tokens are then renewed with each page load.
        seed = self._token if self._token is not None else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"severa-connector console session v1", hashlib.sha256).digest()

    @property
    def accepts_token(self) -> bool:
        return self._token is not None

    def token_matches(self, candidate: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._token)

    # -- sessions ----------------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode()

    def new_session(self, operator: str, *, now: float | None = None) -> str:
        """The cookie value for a fresh session of ``operator``."""
        issued = time.time() if now is None else now
        payload = json.dumps(
            {"op": operator, "exp": int(issued + SESSION_SECONDS), "n": secrets.token_urlsafe(16)},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(payload).decode() + "." + self._sign(payload)

    def read_session(self, value: str, *, now: float | None = None) -> tuple[str, str] | None:
        """(operator, nonce) of a valid, unexpired session cookie; None for anything else."""
        encoded, _, signature = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(payload)
            operator, expires, nonce = str(data["op"]), int(data["exp"]), str(data["n"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (time.time() if now is None else now):
            return None
        return operator, nonce

    def csrf_for(self, binding: str) -> str:
        return self._sign(b"csrf\x00" + binding.encode())

    # -- requests ----------------------------------------------------------------------------------

    def identify(self, request: web.Request) -> Identity | None:
        """Who sent ``request``, or None (then the console answers 401 or the login page)."""
        authorization = request.headers.get("Authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential:
            if not self.token_matches(credential.strip()):
                return None
            name = clean_operator(request.headers.get("X-Operator", "")) or "bearer-token"
            return Identity(operator=name, via="bearer", csrf=None)
        if self.trust_user_header is not None:
            user = clean_operator(request.headers.get(self.trust_user_header, ""))
            if user:
                return Identity(operator=user, via="proxy", csrf=self.csrf_for("proxy\x00" + user))
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and self.accepts_token:
            session = self.read_session(cookie)
            if session is not None:
                operator, nonce = session
                return Identity(operator=operator, via="session", csrf=self.csrf_for("session\x00" + nonce))
        return None

    @staticmethod
    def csrf_ok(identity: Identity, submitted: str | None) -> bool:
        """Bearer requests pass; everyone else must echo their session's token."""
        if identity.csrf is None:
            return True
        return submitted is not None and hmac.compare_digest(submitted.encode(), identity.csrf.encode())


def clean_operator(text: str) -> str:
    """An operator name fit for an audit record: printable, trimmed, bounded."""
    name = "".join(ch for ch in text if ch.isprintable()).strip()
    return name[:MAX_OPERATOR_CHARS]
