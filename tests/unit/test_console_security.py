"""The console's security rules with aiohttp's test client: auth, sessions, CSRF, headers, escaping.

A SQLite store in a temporary directory holds a few dead letters; no broker is needed, because
every refusal tested here happens before an action would reach for one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.config import DlqSettings
from connector.console.app import CONTENT_SECURITY_POLICY, ConsoleConfig, create_app
from connector.console.auth import SESSION_COOKIE, Authenticator, AuthSetupError, read_token
from connector.console.views import esc, render
from connector.dlq.store import open_store
from connector.logging import redact_text
from tests.dlq_factories import record

TOKEN = "s3cret-console-token-0123456789"
HOSTILE = "<script>alert('pwned')</script>"


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    async with open_store(url, create=True) as store:
        await store.add(
            [
                record(id="a" * 32, body=json.dumps({"description": HOSTILE}).encode()),
                record(id="b" * 32, error_message=f"bad {HOSTILE}"),
            ]
        )
    return url


def make_client(store_url: str, tmp_path: Path, **config: object) -> TestClient[object, object]:
    settings = DlqSettings(
        rabbitmq={"url": "amqp://guest:guest@127.0.0.1:1/", "prefix": "t-console."},
        dlq={"store_url": store_url, "audit_log": str(tmp_path / "audit.jsonl")},
        _env_file=None,  # type: ignore[call-arg]
    )
    auth = config.pop("auth", None) or Authenticator(token=TOKEN, trust_user_header=None)
    app = create_app(ConsoleConfig(settings, auth, **config))  # type: ignore[arg-type]
    return TestClient(TestServer(app))


@pytest.fixture
async def client(store_url: str, tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    async with make_client(store_url, tmp_path) as c:
        yield c


BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html"}


async def sign_in(client: TestClient[object, object], name: str = "alice") -> str:
    """Log in through the form; return the CSRF token the pages then carry."""
    form = await client.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', await form.text())
    assert nonce is not None
    response = await client.post(
        "/login",
        data={"login_nonce": nonce.group(1), "operator": name, "token": TOKEN},
        allow_redirects=False,
    )
    assert response.status == 303
    page = await client.get("/groups", headers=HTML)
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf is not None
    return csrf.group(1)


async def test_without_credentials_a_browser_gets_the_login_page_and_a_script_a_401(
    client: TestClient[object, object],
) -> None:
    page = await client.get("/groups", headers=HTML, allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/login"
    api = await client.get("/groups")
    assert api.status == 401
    assert "Bearer" in api.headers["WWW-Authenticate"]


async def test_a_wrong_bearer_token_is_refused_and_the_right_one_accepted(
    client: TestClient[object, object],
) -> None:
    assert (await client.get("/", headers={"Authorization": "Bearer nope-nope-nope-nope"})).status == 401
    ok = await client.get("/", headers=BEARER)
    assert ok.status == 200
    assert "work_hours" in await ok.text()


async def test_every_answer_carries_the_strict_security_headers(client: TestClient[object, object]) -> None:
    for response in (
        await client.get("/login"),
        await client.get("/groups"),  # 401
        await client.get("/", headers=BEARER),
        await client.get("/static/console.css"),
    ):
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


async def test_the_login_form_sets_a_strict_httponly_signed_session(
    client: TestClient[object, object],
) -> None:
    form = await client.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', await form.text())
    assert nonce is not None
    wrong = await client.post(
        "/login", data={"login_nonce": nonce.group(1), "operator": "alice", "token": "wrong"}
    )
    assert wrong.status in (401, 403)
    form = await client.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', await form.text())
    assert nonce is not None
    response = await client.post(
        "/login",
        data={"login_nonce": nonce.group(1), "operator": "alice", "token": TOKEN},
        allow_redirects=False,
    )
    assert response.status == 303
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value
    page = await client.get("/", headers=HTML)
    assert page.status == 200
    assert "signed in as <b>alice</b>" in await page.text()


async def test_login_without_the_form_nonce_is_refused(client: TestClient[object, object]) -> None:
    response = await client.post("/login", data={"operator": "mallory", "token": TOKEN})
    assert response.status == 403
    assert SESSION_COOKIE not in response.cookies


def test_a_tampered_or_expired_session_is_not_accepted() -> None:
    auth = Authenticator(token=TOKEN, trust_user_header=None)
    value = auth.new_session("alice", now=1000.0)
    assert auth.read_session(value, now=1001.0) is not None
    payload, _, signature = value.partition(".")
    forged = Authenticator(token="another-token-of-enough-length", trust_user_header=None)
    assert auth.read_session(forged.new_session("alice", now=1000.0), now=1001.0) is None
    assert auth.read_session(payload + "." + signature[::-1], now=1001.0) is None
    assert auth.read_session(value, now=1000.0 + 9 * 3600) is None


async def test_a_state_changing_form_without_its_csrf_token_is_refused(
    client: TestClient[object, object],
) -> None:
    csrf = await sign_in(client)
    missing = await client.post("/replay/preview", data={"group": "g-000000000000", "reason": "x"})
    assert missing.status == 403
    assert "CSRF" in await missing.text()
    stale = await client.post("/replay/preview", data={"group": "g-000000000000", "reason": "x", "csrf": "x"})
    assert stale.status == 403
    # With the token the request gets past the checks (and fails later: no broker on port 1).
    passed = await client.post(
        "/replay/preview", data={"group": "g-000000000000", "reason": "x", "csrf": csrf}
    )
    assert passed.status == 503


async def test_the_trusted_header_is_ignored_unless_configured(store_url: str, tmp_path: Path) -> None:
    async with make_client(store_url, tmp_path) as plain:
        assert (await plain.get("/", headers={"X-Forwarded-User": "eve"})).status == 401
    proxied_auth = Authenticator(token=None, trust_user_header="X-Forwarded-User")
    async with make_client(store_url, tmp_path, auth=proxied_auth) as proxied:
        page = await proxied.get("/", headers={"X-Forwarded-User": "bob", **HTML})
        assert page.status == 200
        assert "signed in as <b>bob</b>" in await page.text()
        assert (await proxied.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status == 401
        # Proxy users post forms from their browser: CSRF applies to them too.
        refused = await proxied.post(
            "/replay/preview",
            data={"group": "g-000000000000", "reason": "x"},
            headers={"X-Forwarded-User": "bob"},
        )
        assert refused.status == 403


async def test_read_only_offers_no_action_and_refuses_one(store_url: str, tmp_path: Path) -> None:
    async with make_client(store_url, tmp_path, read_only=True) as client:
        page = await client.get(f"/messages/{'a' * 32}", headers=BEARER)
        text = await page.text()
        assert page.status == 200
        assert "read-only" in text.lower()
        assert 'action="/replay/preview"' not in text
        assert 'action="/messages/' not in text
        refused = await client.post(
            "/replay/preview", data={"group": "g-000000000000", "reason": "x"}, headers=BEARER
        )
        assert refused.status == 403


async def test_hostile_bodies_and_error_messages_are_shown_as_text(
    client: TestClient[object, object],
) -> None:
    page = await (await client.get(f"/messages/{'a' * 32}", headers=BEARER)).text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    group_page = await (await client.get("/groups", headers=BEARER)).text()
    assert "<script>" not in group_page
    assert "bad &lt;script&gt;" in group_page


def test_render_escapes_values_and_passes_only_its_own_markup() -> None:
    assert render("<p>$x</p>", x="<b>&\"'") == "<p>&lt;b&gt;&amp;&quot;&#x27;</p>"
    assert render("<p>$x</p>", x=render("<i>$y</i>", y="<")) == "<p><i>&lt;</i></p>"
    assert esc(None) == ""


def test_the_token_file_is_read_registered_as_a_secret_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token(path) == TOKEN
    assert TOKEN not in redact_text(f"token is {TOKEN}")
    path.write_text("short")
    with pytest.raises(AuthSetupError, match="shorter"):
        read_token(path)
    with pytest.raises(AuthSetupError, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(AuthSetupError, match="--token-file"):
        Authenticator(token=None, trust_user_header=None)
