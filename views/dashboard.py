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

from access import SESSION_COOKIE, SESSION_SECONDS, new_session_cookie, session_key_from_cookie
from models import DashboardSession
from security import same_secret

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)

# Reachable through the tunnel without credentials, and only when ADMIN_TOKEN is set.
LOGIN_ENDPOINTS = {"dashboard.login"}
LANGUAGES = ("en", "pt-BR")
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
        attempts = current_app.extensions["zaphook.login_attempts"]
        if not attempts.hit(request.remote_addr or "-"):
            wait = attempts.retry_after(request.remote_addr or "-")
            log.warning("dashboard login refused: too many attempts from %s", request.remote_addr)
            response = make_response(render_template("login.html", t=strings, language=language, failed=False,
                                                     retry_after=wait), 429)
            response.headers["Retry-After"] = str(wait)
            return _login_headers(response)
        given = (request.form.get("token") or "").strip()
        if given and same_secret(given, admin_token):
            cookie, key = new_session_cookie(admin_token)
            DashboardSession.open(key, SESSION_SECONDS)
            response = redirect("/", code=303)
            # is_secure: https as waitress saw it; only on the tunnel listener does it take the
            # agent's X-Forwarded-Proto (serving.py), so no header elsewhere can fake it.
            response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True,
                                secure=request.is_secure, samesite="Strict", path="/")
            return response
        log.warning("dashboard login refused: wrong ADMIN_TOKEN from %s", request.remote_addr)
        failed = True
    response = make_response(render_template("login.html", t=strings, language=language, failed=failed),
                             403 if failed else 200)
    return _login_headers(response)


def _login_headers(response):
    response.headers["Content-Security-Policy"] = LOGIN_CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/logout")
def logout():
    """End the session on the server too: a copy of the cookie stops working at once."""
    key = session_key_from_cookie(request.cookies.get(SESSION_COOKIE), current_app.config.get("ADMIN_TOKEN"))
    if key:
        DashboardSession.close(key)
    response = redirect("/login" if current_app.config.get("ADMIN_TOKEN") else "/", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=request.is_secure, samesite="Strict")
    return response
