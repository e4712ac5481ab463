"""Sign-in, sign-out, lockout, CSRF and cookie flags, through the Flask test client on both backends."""
from __future__ import annotations

import pytest
from admin.support import PASSWORD, TOKEN, USER, WRONG, csrf, sign_in
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import MAX_FAILURES, Accounts

#: Every console page with an example of its arguments; a test checks this covers every /admin route.
PAGES = ["/admin/", "/admin/rules", "/admin/mappings", "/admin/mappings/administration", "/admin/profiles",
         "/admin/profiles/ketamine-administration", "/admin/profiles/package.tgz", "/admin/try",
         "/admin/examples/examples/Patient-demo-alpha.json", "/admin/patients", "/admin/patients?identifier=MRN",
         "/admin/mappings/administration/history", "/admin/exchange", "/admin/exchange/outbox", "/admin/audit",
         "/admin/records/administration", "/admin/records/administration?q=MRN"]
#: Pages about stored data or a configured endpoint: opened signed in by their own tests (test_patients,
#: test_exchange), here only refused without a session.
DATA_PAGES = ["/admin/patients/course?system=https://clinic.example/mrn&value=MRN-001",
              "/admin/exchange/endpoints/ehr", "/admin/exchange/jobs/1",
              "/admin/records/administration/00000000-0000-4000-8000-000000000000", "/admin/no/such/page"]
PUBLIC = {"admin.sign_in", "admin.static"}
ACTIONS = ["/admin/try", "/admin/sign-out", "/admin/exchange/jobs/1/retry", "/admin/exchange/endpoints/ehr/retry-dead",
           "/admin/exchange/endpoints/ehr/capabilities", "/admin/exchange/endpoints/ehr/sandbox-check",
           "/admin/exchange/endpoints/ehr/disable", "/admin/exchange/endpoints/ehr/enable"]


def test_the_page_list_covers_every_console_route(app: Flask) -> None:
    adapter = app.url_map.bind("localhost")
    covered = {adapter.match(p.split("?")[0])[0] for p in PAGES + DATA_PAGES}
    covered |= {adapter.match(p, method="POST")[0] for p in ACTIONS}
    routes = {r.endpoint for r in app.url_map.iter_rules() if r.rule.startswith("/admin")}
    assert routes - PUBLIC - covered == set()


@pytest.mark.parametrize("page", PAGES + DATA_PAGES)
def test_every_page_redirects_to_sign_in_without_a_session(client: FlaskClient, page: str) -> None:
    response = client.get(page)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/sign-in?next=/admin")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_once_signed_in(admin: FlaskClient, page: str) -> None:
    assert admin.get(page).status_code == 200


@pytest.mark.parametrize("page", ["/admin/no/such/page", "/admin/exchange/jobs/99999999999999999999",
                                  "/admin/records/nothing", "/admin/exchange/endpoints/nowhere"])
def test_unknown_console_pages_answer_the_consoles_404_page(admin: FlaskClient, page: str) -> None:
    response = admin.get(page)

    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "<h1>404 Not Found</h1>" in response.get_data(as_text=True) and "Signed in as" in response.get_data(as_text=True)


def test_a_bug_in_a_console_page_answers_the_consoles_500_page(admin: FlaskClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from service.admin import overview

    def broken(*_: object) -> None:
        raise RuntimeError("a bug, with a detail no one should see")

    monkeypatch.setattr(overview, "overview", broken)
    monkeypatch.setattr("service.web.admin.views.counts", broken)
    response = admin.get("/admin/")

    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "<h1>500 Internal Server Error</h1>" in page
    assert "a detail no one should see" not in page


def test_signing_in_goes_to_the_page_asked_for(client: FlaskClient, accounts: Accounts) -> None:
    response = sign_in(client, next="/admin/profiles")

    assert (response.status_code, response.headers["Location"]) == (302, "/admin/profiles")
    assert "Signed in as <strong>alice</strong>" in client.get("/admin/profiles").get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/fhir/metadata",
                                    "/admin\\@evil.example"])
def test_sign_in_never_redirects_outside_the_console(client: FlaskClient, accounts: Accounts, target: str) -> None:
    assert sign_in(client, next=target).headers["Location"] == "/admin/"


def test_a_wrong_password_is_refused_with_one_message_for_every_cause(client: FlaskClient, accounts: Accounts) -> None:
    wrong = sign_in(client, password=WRONG)
    unknown = sign_in(client, username="mallory")

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_five_failures_lock_the_account_and_the_right_password_then_fails_too(
        client: FlaskClient, accounts: Accounts) -> None:
    for _ in range(MAX_FAILURES):
        sign_in(client, password=WRONG)

    response = sign_in(client)

    assert response.status_code == 401
    assert "Too many failed attempts" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_sign_out_ends_the_session_and_every_copy_of_its_cookie(admin: FlaskClient, app: Flask) -> None:
    stolen = admin.get_cookie("kfhir_admin", path="/admin")
    assert stolen is not None

    response = admin.post("/admin/sign-out", data={"csrf_token": csrf(admin, "/admin/")})

    assert (response.status_code, response.headers["Location"]) == (302, "/admin/sign-in")
    assert admin.get("/admin/").status_code == 302
    replay = app.test_client()
    replay.set_cookie("kfhir_admin", stolen.value, path="/admin")
    assert replay.get("/admin/").status_code == 302


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
@pytest.mark.parametrize("action", ACTIONS)
def test_a_form_without_its_csrf_token_is_refused_with_403(admin: FlaskClient, action: str, token: str | None) -> None:
    data = {"kind": "auto", "document": "{}"} | ({"csrf_token": token} if token is not None else {})

    response = admin.post(action, data=data)

    assert response.status_code == 403
    assert "security token" in response.get_data(as_text=True)
    assert admin.get("/admin/").status_code == 200  # still signed in: the refused sign-out did nothing


def test_the_sign_in_form_needs_its_csrf_token_too(client: FlaskClient, accounts: Accounts) -> None:
    response = client.post("/admin/sign-in", data={"username": USER, "password": PASSWORD})

    assert response.status_code == 403


def test_the_token_of_another_session_is_refused(admin: FlaskClient, app: Flask, accounts: Accounts) -> None:
    other = app.test_client()
    sign_in(other)
    response = admin.post("/admin/try", data={"csrf_token": csrf(other, "/admin/try"), "document": "{}"})

    assert response.status_code == 403


def _cookie_header(response: object) -> str:
    headers = response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
    assert len(headers) == 1, headers
    return str(headers[0])


def test_the_session_cookie_is_httponly_samesite_lax_and_limited_to_the_console(
        client: FlaskClient, accounts: Accounts) -> None:
    cookie = _cookie_header(sign_in(client))

    assert cookie.startswith("kfhir_admin=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain HTTP here; browsers would drop a Secure cookie


def test_the_cookie_is_secure_when_served_over_tls(app: Flask, accounts: Accounts) -> None:
    client = app.test_client()
    page = client.get("/admin/sign-in", base_url="https://localhost")
    token = TOKEN.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]

    response = client.post("/admin/sign-in", base_url="https://localhost",
                           data={"csrf_token": token, "username": USER, "password": PASSWORD})

    assert "; Secure" in _cookie_header(response)


def test_the_cookie_is_secure_when_configured(app: Flask, accounts: Accounts) -> None:
    app.config["SESSION_COOKIE_SECURE"] = True  # what KFHIR_SECURE_COOKIES=1 sets, for TLS-terminating proxies

    assert "; Secure" in _cookie_header(app.test_client().get("/admin/sign-in"))


def test_the_apis_never_set_or_read_a_session_cookie(client: FlaskClient) -> None:
    assert client.get("/health").headers.get("Set-Cookie") is None
    assert client.get("/fhir/metadata").headers.get("Set-Cookie") is None


def test_the_console_says_so_when_the_database_is_not_migrated(tmp_path: object) -> None:
    from service import create_app

    app = create_app({"database_url": f"sqlite:///{tmp_path}/empty.db"})
    response = app.test_client().get("/admin/sign-in")

    assert response.status_code == 503
    assert "db upgrade" in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["/admin/sign-in", "/admin/", "/admin/try", "/admin/mappings/banana"])
def test_console_pages_forbid_framing_scripts_and_caching(admin: FlaskClient, page: str) -> None:
    headers = admin.get(page).headers

    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers scripts
    assert (headers["X-Frame-Options"], headers["Cache-Control"]) == ("DENY", "no-store")
