"""The dashboard's access over plain HTTP on a real ``ketch up`` with users: anonymous
callers are sent to sign in (a browser) or answered 401 (anything else), another
profile's owner gets 403 from every page and write on Alice's objects and never sees
her namespace, her viewer reads but is offered no edit or delete and is refused them,
a signed-in session's writes need its CSRF token and this server's origin, and the
pages read exactly what the API lets each caller read."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

from ketch.ui.assets import url
from tests.tenancy.helpers import ALICE, BOB, CAROL
from tests.ui.conftest import ALICE_NS, BOB_NS, DOOMED, EDIT_JOB, PASSWORD, Dashboard

pytestmark = pytest.mark.timeout(300)

HTML = {"Accept": "text/html"}
JOB = "/ui/k/pytorchjobs.kubeflow.org/" + EDIT_JOB
PAGES = (
    "/",
    "/ui/runs",
    "/ui/experiments",
    "/ui/pipelines",
    "/ui/models",
    "/ui/k/pytorchjobs.kubeflow.org",
    "/ui/k/notebooks.kubeflow.org",
    JOB,
    JOB + "/edit",
)


def test_an_anonymous_browser_is_sent_to_sign_in_and_other_callers_get_401(
    multi: Dashboard,
) -> None:
    with multi.client() as http:
        for page in PAGES:
            visit = http.get(page, params={"ns": ALICE_NS}, headers=HTML)
            assert visit.status_code == 303, (page, visit.status_code)
            location = urlsplit(visit.headers["location"])
            assert location.path == "/auth/login", location
            assert http.get(page, params={"ns": ALICE_NS}).status_code == 401, page
        assert http.get(url("htmx-2.0.11.min.js")).status_code == 401
        assert http.put(JOB, params={"ns": ALICE_NS}, json={"yaml": "a: 1"}).status_code == 401
        assert http.get(f"/ui/runs/{multi.run_id}").status_code == 401
        # the sign-in page is the one that was there, and it sends the browser back
        login = http.get("/auth/login", params={"next": "/?ns=ui-alice"})
        assert login.status_code == 200 and 'name="password"' in login.text


def test_another_profiles_owner_cannot_read_or_change_alices_objects(multi: Dashboard) -> None:
    with multi.client(BOB) as bob:
        for page in PAGES:
            answer = bob.get(page, params={"ns": ALICE_NS}, headers=HTML)
            assert answer.status_code == 403, (page, answer.status_code)
            assert "Not allowed" in answer.text and f"name: {EDIT_JOB}" not in answer.text
            assert f'<option value="{ALICE_NS}"' not in answer.text
        assert bob.get(f"/ui/runs/{multi.run_id}").status_code == 403
        assert (
            bob.get(f"/ui/k/configmaps/{ALICE_NS}-plans", params={"ns": ALICE_NS}).status_code
            == 403
        )
        saved = bob.put(JOB, params={"ns": ALICE_NS}, json={"yaml": "a: 1"})
        assert saved.status_code == 403
        gone = bob.delete(f"/ui/k/configmaps/{DOOMED}", params={"ns": ALICE_NS})
        assert gone.status_code == 403
        # his own pages never name Alice's namespace or objects
        home = bob.get("/", headers=HTML, follow_redirects=True)
        assert home.status_code == 200 and f"?ns={BOB_NS}" in str(home.url)
        assert ALICE_NS not in home.text and f"{BOB_NS}-plans" not in home.text
        listed = bob.get("/ui/k/configmaps", params={"ns": BOB_NS})
        assert f"{BOB_NS}-plans" in listed.text and ALICE_NS not in listed.text
        profiles = bob.get("/ui/k/profiles.kubeflow.org")
        assert BOB_NS in profiles.text and ALICE_NS not in profiles.text
        runs = bob.get("/ui/runs", params={"ns": BOB_NS})
        assert runs.status_code == 200 and multi.run_id not in runs.text


def test_a_viewer_reads_but_is_offered_and_allowed_no_change(multi: Dashboard) -> None:
    with multi.client(CAROL) as carol, multi.client(ALICE) as alice:
        page = carol.get(JOB, params={"ns": ALICE_NS})
        assert page.status_code == 200
        assert f"name: {EDIT_JOB}" in page.text
        assert 'id="edit"' not in page.text and 'id="confirm-delete"' not in page.text
        owner = alice.get(JOB, params={"ns": ALICE_NS})
        assert 'id="edit"' in owner.text and 'id="confirm-delete"' in owner.text
        assert carol.get(JOB + "/edit", params={"ns": ALICE_NS}).status_code == 403
        assert carol.put(JOB, params={"ns": ALICE_NS}, json={"yaml": "a: 1"}).status_code == 403
        doomed = f"/ui/k/configmaps/{DOOMED}"
        assert carol.delete(doomed, params={"ns": ALICE_NS}).status_code == 403
        # her home and the run's page show Alice's run; a Secret list needs edit
        home = carol.get("/", params={"ns": ALICE_NS})
        assert home.status_code == 200 and multi.run_id in home.text
        assert carol.get(f"/ui/runs/{multi.run_id}").status_code == 200
        assert carol.get("/ui/k/secrets", params={"ns": ALICE_NS}).status_code == 403
        selector = re.findall(r'<option value="([^"]+)"', home.text)
        assert selector == [ALICE_NS]


def _signed_in(multi: Dashboard, email: str) -> tuple[httpx.Client, str]:
    http = multi.client()
    signed = http.post(
        "/auth/login",
        data={"email": email, "password": PASSWORD, "next": "/"},
        headers={"Origin": multi.url},
    )
    assert signed.status_code == 303, signed.text
    page = http.get("/", params={"ns": ALICE_NS}, headers=HTML)
    found = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text)
    assert found and found.group(1), page.text[:500]
    return http, found.group(1)


def test_a_sessions_writes_need_its_csrf_token_and_this_servers_origin(multi: Dashboard) -> None:
    http, csrf = _signed_in(multi, ALICE)
    try:
        bad = {"yaml": "spec: [unclosed"}
        params = {"ns": ALICE_NS}
        assert http.put(JOB, params=params, json=bad).status_code == 403  # no token
        origin = {"Origin": multi.url, "X-CSRF-Token": csrf, "HX-Request": "true"}
        answered = http.put(JOB, params=params, json=bad, headers=origin)
        assert answered.status_code == 422 and "does not parse" in answered.text
        elsewhere = {**origin, "Origin": "https://evil.example"}
        assert http.put(JOB, params=params, json=bad, headers=elsewhere).status_code == 403
        # a form post (what another site's page could send) is refused
        form = http.put(JOB, params=params, data={"yaml": "a: 1"}, headers=origin)
        assert form.status_code == 415
        gone = http.delete(f"/ui/k/configmaps/{DOOMED}", params=params, headers=origin)
        assert gone.status_code == 200 and gone.headers["hx-redirect"].startswith(
            "/ui/k/configmaps?"
        )
        assert http.get(f"/api/v1/namespaces/{ALICE_NS}/configmaps/{DOOMED}").status_code == 404
    finally:
        http.close()
