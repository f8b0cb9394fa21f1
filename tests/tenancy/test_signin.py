"""Browser sign-in on a real ``ketch up``: the sign-in page and its form post, the
session cookie's flags, CSRF on a signed-in page's writes, no open redirect, sign-out,
brute force limited through the form, and OIDC sign-in in Chromium through a real
local OpenID Connect provider (authlib's server classes on 127.0.0.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import MAX_FAILURES, Directory
from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.core.conftest import _postgres_database
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server
from tests.tenancy.oidc_provider import Provider

ADMIN, ALICE, BOB, CAROL = (
    "admin@example.com",
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
)
PASSWORD = "correct horse battery"
CLIENT_ID, CLIENT_SECRET = "ketch-test", "s3cret-of-the-client"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    # the provider's own accounts: Alice is a Ketch user, Carol is not
    started = Provider({ALICE: "alice-at-the-idp", CAROL: "carol-at-the-idp"}).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp(f"ketch-signin-{request.param}")
    secret_file = home / "oidc-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    env = {**SERVER_ENV, "KETCH_OIDC_NAME": "Test IdP"}
    if request.param == "sqlite":  # configured with ketch up's options
        args = ("--oidc-issuer", provider.issuer, "--oidc-client-id", CLIENT_ID)
        args += ("--oidc-client-secret-file", str(secret_file))
        yield from _started(Server(home, extra_env=env, args=args), provider)
        return
    env |= {  # configured with the environment
        "KETCH_OIDC_ISSUER": provider.issuer,
        "KETCH_OIDC_CLIENT_ID": CLIENT_ID,
        "KETCH_OIDC_CLIENT_SECRET": CLIENT_SECRET,
    }
    for url in _postgres_database():  # the database lives while the generator runs
        yield from _started(Server(home, database_url=url, extra_env=env), provider)


def _started(server: Server, provider: Provider) -> Iterator[Server]:
    for started in serve(server):
        provider.add_client(CLIENT_ID, CLIENT_SECRET, f"{started.url}/auth/oidc/callback")
        database = Database(started.db_url)
        database.migrate([MIGRATIONS])
        directory = Directory(database)
        directory.add(ADMIN, admin=True, password=PASSWORD)
        directory.add(ALICE, password=PASSWORD)
        directory.add(BOB, password=PASSWORD)
        database.dispose()
        yield started


def _form(server: Server) -> dict[str, str]:
    return {"Origin": server.url}


def test_the_sign_in_form_starts_a_session_and_refuses_open_redirects(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        # an API client still gets 401; a browser's visit to a page goes to sign in
        assert http.get("/auth/account").status_code == 401
        visit = http.get("/auth/account?tab=1", headers={"Accept": "text/html"})
        assert visit.status_code == 303
        assert visit.headers["location"] == "/auth/login?next=%2Fauth%2Faccount%3Ftab%3D1"
        api = http.get("/api/v1/namespaces", headers={"Accept": "text/html"})
        assert api.status_code == 401

        page = http.get("/auth/login", params={"next": "/auth/account"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert 'name="password"' in page.text and "Sign in with Test IdP" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        for evil in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:x"):
            shown = http.get("/auth/login", params={"next": evil}).text
            assert "evil.example" not in shown and "javascript:" not in shown

        body = {"email": ALICE, "password": PASSWORD, "next": "https://evil.example/x"}
        signed = http.post("/auth/login", data=body, headers=_form(server))
        assert signed.status_code == 303
        assert signed.headers["location"] == "/auth/account"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("ketch_session=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        assert http.get("/auth/whoami").json()["user"] == ALICE
        assert http.get("/auth/session").json()["csrf"]

        # the form post is taken only from this server's own page
        foreign = {"Origin": "https://evil.example"}
        assert http.post("/auth/login", data=body, headers=foreign).status_code == 403
        assert http.post("/auth/login", data=body).status_code == 403  # no Origin
        elsewhere = http.post("/auth/token", data=body, headers=_form(server))
        assert elsewhere.status_code == 415

        # signing out needs the session's CSRF token
        assert http.post("/auth/logout", headers=_form(server)).status_code == 403
        csrf = http.get("/auth/session").json()["csrf"]
        out = http.post("/auth/logout", headers={"x-csrf-token": csrf})
        assert out.status_code == 200
        assert http.get("/auth/whoami").status_code == 401


def test_sign_in_brute_force_is_limited_through_the_form(server: Server) -> None:
    # from an address of its own (127.0.0.2), so other tests' sign-ins are not limited
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, transport=transport, timeout=30.0) as http:
        for _ in range(MAX_FAILURES):
            wrong = {"email": BOB, "password": "not the password"}
            refused = http.post("/auth/login", data=wrong, headers=_form(server))
            assert refused.status_code == 401
            assert "Wrong email or password." in refused.text
        right = {"email": BOB, "password": PASSWORD}
        limited = http.post("/auth/login", data=right, headers=_form(server))
        assert limited.status_code == 429
        assert "Too many failed sign-ins" in limited.text
        assert "set-cookie" not in limited.headers
        # the address is limited for any account too
        other = {"email": ALICE, "password": PASSWORD}
        assert http.post("/auth/login", data=other, headers=_form(server)).status_code == 429


def test_chromium_signs_in_with_a_password(
    browser: BrowserThread,  # noqa: F811
    server: Server,
) -> None:
    async def visit(chromium: Any) -> dict[str, Any]:
        context = await chromium.new_context()
        page = await context.new_page()
        seen: dict[str, Any] = {}
        try:
            await page.goto(f"{server.url}/auth/account")
            assert urlsplit(page.url).path == "/auth/login"
            await page.fill("#email", ADMIN)
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url(f"{server.url}/auth/account")
            seen["user"] = await page.text_content("#user")
            seen["cookies"] = await context.cookies()
            writes = """async ([csrf]) => {
                const body = JSON.stringify({apiVersion: "v1", kind: "ConfigMap",
                    metadata: {name: csrf ? "with-csrf" : "without-csrf"}, data: {a: "b"}});
                const headers = {"Content-Type": "application/json"};
                if (csrf) headers["x-csrf-token"] = csrf;
                const r = await fetch("/api/v1/namespaces/default/configmaps",
                    {method: "POST", headers, body});
                return r.status;
            }"""
            seen["without"] = await page.evaluate(writes, [""])
            session = await page.evaluate("async () => (await fetch('/auth/session')).json()")
            seen["with"] = await page.evaluate(writes, [session["csrf"]])
            seen["document_cookie"] = await page.evaluate("document.cookie")

            # a sign-in given another site as next stays on this server
            await page.goto(f"{server.url}/auth/login?next=https://evil.example/")
            await page.fill("#email", ADMIN)
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url(f"{server.url}/auth/account")
            seen["after_evil"] = page.url

            await page.click("#sign-out")
            await page.wait_for_url(re.compile(r".*/auth/login$"))
            await page.goto(f"{server.url}/auth/account")
            seen["signed_out"] = urlsplit(page.url).path
            return seen
        finally:
            await context.close()

    seen = browser.run(visit)
    assert "Signed in as admin@example.com" in seen["user"]
    session = next(c for c in seen["cookies"] if c["name"] == "ketch_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    assert session["path"] == "/" and session["secure"] is False
    assert "ketch_session" not in seen["document_cookie"]
    assert seen["without"] == 403
    assert seen["with"] == 201
    assert urlsplit(seen["after_evil"]).hostname == "127.0.0.1"
    assert seen["signed_out"] == "/auth/login"


def test_chromium_signs_in_with_oidc(
    browser: BrowserThread,  # noqa: F811
    server: Server,
    provider: Provider,
) -> None:
    async def sign_in(chromium: Any, email: str, password: str) -> dict[str, Any]:
        context = await chromium.new_context()
        page = await context.new_page()
        seen: dict[str, Any] = {}
        try:
            await page.goto(f"{server.url}/auth/account")
            await page.click("#oidc")
            await page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/authorize\?.*"))
            seen["authorize"] = page.url
            await page.fill("#idp-email", email)
            await page.fill("#idp-password", password)
            await page.click("#idp-allow")
            await page.wait_for_url(re.compile(re.escape(server.url) + r"/auth/.*"))
            await page.wait_for_load_state()
            seen["url"] = page.url
            seen["text"] = await page.text_content("main")
            seen["cookies"] = await context.cookies(server.url)
            return seen
        finally:
            await context.close()

    before = provider.token_requests
    alice = browser.run(lambda chromium: sign_in(chromium, ALICE, "alice-at-the-idp"))
    query = parse_qs(urlsplit(alice["authorize"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0] and query["client_id"] == [CLIENT_ID]
    assert urlsplit(alice["url"]).path == "/auth/account"
    assert "Signed in as alice@example.com" in alice["text"]
    assert provider.token_requests == before + 1
    names = {c["name"]: c for c in alice["cookies"]}
    assert names["ketch_session"]["httpOnly"] and names["ketch_session"]["sameSite"] == "Lax"
    assert "ketch_oidc" not in names

    # Carol is known to the provider but not to Ketch (no self-registration here)
    carol = browser.run(lambda chromium: sign_in(chromium, CAROL, "carol-at-the-idp"))
    assert "no Ketch user has the email carol@example.com" in carol["text"]
    assert "ketch_session" not in {c["name"] for c in carol["cookies"]}


def test_an_oidc_callback_without_its_flow_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        forged = http.get("/auth/oidc/callback", params={"code": "x", "state": "y"})
        assert forged.status_code == 400
        assert "not started in this browser" in forged.text
        assert "ketch_session" not in forged.headers.get("set-cookie", "")
        started = http.get("/auth/oidc/login", params={"next": "/auth/account"})
        assert started.status_code == 303
        flow_cookie = started.headers["set-cookie"]
        assert flow_cookie.startswith("ketch_oidc=") and "HttpOnly" in flow_cookie
        state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
        # the right state with a code the provider never issued: the exchange fails
        wrong_code = http.get("/auth/oidc/callback", params={"code": "nope", "state": state})
        assert wrong_code.status_code == 400
        assert "refused the sign-in" in wrong_code.text
        # a tampered flow cookie is not accepted
        http.cookies.set("ketch_oidc", "x" + flow_cookie.split(";")[0].split("=", 1)[1])
        tampered = http.get("/auth/oidc/callback", params={"code": "x", "state": state})
        assert tampered.status_code == 400


def test_next_is_a_path_on_this_server_only() -> None:
    from ketch.tenancy.pages import HOME, safe_next

    for kept in ("/", "/auth/account", "/pipelines?ns=a#x", "/a/b%2Fc"):
        assert safe_next(kept) == kept
    for refused in (
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/a\nLocation: x",
        "",
        None,
        "/" + "a" * 3000,
    ):
        assert safe_next(refused) == HOME


def test_oidc_settings_say_which_variable_is_wrong(tmp_path: Any) -> None:
    from ketch.core.errors import InvalidSpec
    from ketch.tenancy import oidc

    assert oidc.settings({}) is None
    with pytest.raises(InvalidSpec, match="must be https"):
        oidc.settings({oidc.ISSUER_ENV: "http://idp.example", oidc.CLIENT_ID_ENV: "x"})
    with pytest.raises(InvalidSpec, match="no client id"):
        oidc.settings({oidc.ISSUER_ENV: "https://idp.example"})
    missing = tmp_path / "missing"
    with pytest.raises(InvalidSpec, match="cannot read the OIDC client secret"):
        oidc.settings(
            {
                oidc.ISSUER_ENV: "https://idp.example/",
                oidc.CLIENT_ID_ENV: "x",
                oidc.CLIENT_SECRET_FILE_ENV: str(missing),
            }
        )
    made = oidc.settings({oidc.ISSUER_ENV: "https://idp.example/", oidc.CLIENT_ID_ENV: "x"})
    assert made is not None and made.issuer == "https://idp.example"
    assert made.name == "idp.example" and "secret" not in repr(made)


def test_ketch_up_refuses_wrong_oidc_options(tmp_path: Any) -> None:
    server = Server(tmp_path, args=("--oidc-issuer", "http://idp.example"))
    with pytest.raises(RuntimeError, match=r"--oidc-issuer \(KETCH_OIDC_ISSUER\).*https"):
        server.start()
    server.stop()


def test_the_oidc_flow_cookie_is_sealed() -> None:
    import time

    from ketch.tenancy.oidc import seal, unseal

    key, other = b"k" * 32, b"o" * 32
    sealed = seal(key, {"s": "state", "exp": time.time() + 60})
    assert unseal(key, sealed) is not None and unseal(key, sealed)["s"] == "state"  # type: ignore[index]
    assert unseal(other, sealed) is None
    body, mac = sealed.split(".")
    assert unseal(key, body[:-2] + "xx." + mac) is None
    assert unseal(key, seal(key, {"s": "state", "exp": time.time() - 1})) is None


def test_the_session_cookie_is_secure_under_tls(tmp_path: Any) -> None:
    import ssl

    from ketch.core import tls

    server = Server(tmp_path / "home", args=("--tls-self-signed",)).start()
    try:
        database = Database(server.db_url)
        database.migrate([MIGRATIONS])
        Directory(database).add(ADMIN, admin=True, password=PASSWORD)
        database.dispose()
        assert server.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(tls.ca_path(server.home)))
        with httpx.Client(base_url=server.url, verify=trusted, timeout=30.0) as http:
            body = {"email": ADMIN, "password": PASSWORD, "next": "/auth/account"}
            signed = http.post("/auth/login", data=body, headers=_form(server))
            assert signed.status_code == 303
            cookie = signed.headers["set-cookie"]
            assert cookie.startswith("ketch_session=") and "Secure" in cookie
            assert "HttpOnly" in cookie and "SameSite=lax" in cookie
            assert http.get("/auth/session").json()["user"] == ADMIN
    finally:
        assert server.stop() == 0, server.output()[-4000:]
