"""The dashboard's pages: the single-page app at / and the login page for the tunnel.

Everything the dashboard shows comes from the JSON API; these routes only hand
out the page, and let a browser that knows ADMIN_TOKEN in through the tunnel.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, current_app, make_response, redirect, render_template, request

from security import SESSION_COOKIE, dashboard_session, same_secret

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)

# Reachable through the tunnel without credentials, and only when ADMIN_TOKEN is set.
LOGIN_ENDPOINTS = {"dashboard.login"}
LANGUAGES = ("en", "pt-BR")
SESSION_DAYS = 30
# Scripts and styles from zaphook only; media from the API; no framing by other sites.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
LOGIN_CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                 "base-uri 'none'; frame-ancestors 'none'")


@lru_cache(maxsize=None)
def _catalogue(static_folder: str, language: str) -> dict:
    return json.loads((Path(static_folder) / "i18n" / f"{language}.json").read_text(encoding="utf-8"))


def _language() -> str:
    """pt-BR for a browser that prefers Portuguese, English otherwise."""
    best = request.accept_languages.best_match(["en", "pt-BR", "pt"], default="en")
    return "pt-BR" if best.startswith("pt") else "en"


def _is_https() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


@bp.get("/")
def index():
    page = (Path(current_app.static_folder) / "index.html").read_bytes()
    response = make_response(page, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Trade ADMIN_TOKEN, pasted once, for an HttpOnly session cookie."""
    admin_token = current_app.config.get("ADMIN_TOKEN")
    if not admin_token:
        # Only reachable from this machine then, where the dashboard needs no login.
        return redirect("/", code=303)
    language = _language()
    strings = _catalogue(current_app.static_folder, language)
    failed = False
    if request.method == "POST":
        given = (request.form.get("token") or "").strip()
        if given and same_secret(given, admin_token):
            response = redirect("/", code=303)
            response.set_cookie(SESSION_COOKIE, dashboard_session(admin_token), max_age=SESSION_DAYS * 86400,
                                httponly=True, secure=_is_https(), samesite="Strict", path="/")
            return response
        log.warning("dashboard login refused: wrong ADMIN_TOKEN from %s", request.remote_addr)
        failed = True
    response = make_response(render_template("login.html", t=strings, language=language, failed=failed),
                             403 if failed else 200)
    response.headers["Content-Security-Policy"] = LOGIN_CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/logout")
def logout():
    response = redirect("/login" if current_app.config.get("ADMIN_TOKEN") else "/", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=_is_https(), samesite="Strict")
    return response
