"""Logging in through the login form, as a browser does: GET the page (CSRF cookie and token), POST
the form with the token and a same-origin Referer, keep the session cookie. Needs only the
standard library."""

from __future__ import annotations

import html.parser
import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request

from clients.endpoint import ClientError, Endpoint, describe_os_error

USER_AGENT = "chat-client/1 (python urllib)"


class FormPage(html.parser.HTMLParser):
    """What a page's forms hold that logging in needs: the `csrfmiddlewaretoken` values, and
    whether there is a password field (the login form is still there: the login was refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.csrf: list[str] = []
        self.password_field = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "input":
            return
        values = dict(attrs)
        token = values.get("value")
        if values.get("name") == "csrfmiddlewaretoken" and token:
            self.csrf.append(token)
        if values.get("type") == "password":
            self.password_field = True


def parse_form(page: bytes | str) -> FormPage:
    parser = FormPage()
    parser.feed(page.decode("utf-8", "replace") if isinstance(page, bytes) else page)
    parser.close()
    return parser


def login(endpoint: Endpoint, username: str, password: str, *, timeout: float = 10.0) -> str:
    """Log in through the login form; return a `Cookie:` header value with the session cookie.
    Raises ClientError with one sentence."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]

    def fetch(request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()
        except (OSError, urllib.error.URLError) as error:
            raise ClientError(describe_os_error(error, endpoint)) from None

    status, page = fetch(urllib.request.Request(endpoint.login_url))
    if status != 200:
        raise ClientError(
            f"The login page {endpoint.login_url} answered HTTP {status}: is this the chat server's URL?",
            fixable=status in (400, 403, 404),
        )
    form = parse_form(page)
    if not form.csrf or not any(cookie.name == "csrftoken" for cookie in jar):
        raise ClientError(f"No login form at {endpoint.login_url}: is this the chat server's URL?", fixable=True)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": form.csrf[0], "username": username, "password": password, "next": ""}
    ).encode()
    request = urllib.request.Request(
        endpoint.login_url, data=data, method="POST", headers={"Referer": endpoint.login_url}
    )
    status, page = fetch(request)
    if status == 403:
        raise ClientError(
            f"The server refused the login form (HTTP 403, CSRF check): behind a proxy, "
            f"DJANGO_CSRF_TRUSTED_ORIGINS must include {endpoint.http_base}.",
            fixable=True,
        )
    if status != 200:
        raise ClientError(f"Logging in answered HTTP {status}.")
    if parse_form(page).password_field:  # the login page again: Django refused the credentials
        raise ClientError(
            f"Login as {username!r} failed: wrong username or password (or the account is deactivated).",
            fixable=True,
        )
    if not any(cookie.name != "csrftoken" for cookie in jar):
        raise ClientError("Logging in set no session cookie: is this the chat server's URL?", fixable=True)
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)
