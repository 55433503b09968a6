"""Response headers and redirect checks every page gets."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def add_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # A page's language follows the browser's Accept-Language and the language cookie: a shared
    # cache must not hand one visitor's language to the next.
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def is_local_path(target: str | None) -> bool:
    """Only a path on this site ("/x", not "//evil", not "https://evil", not "/\\evil")."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    if not target.isprintable() or len(target) > 2000:  # CR/LF would split the Location header
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def install(app: Flask) -> None:
    app.after_request(add_security_headers)
    if app.config.get("AFTERSALES_HTTPS"):
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
