"""The media part of the JSON API: list, inspect, open and retry downloads.

Like the rest of the API, reachable from this machine, or through the tunnel
only with the ADMIN_TOKEN (the request hooks in server.py enforce it).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, request, send_file

from codes import error_body, say
from models import MediaAttempt, MediaFile, bare_mimetype, media_detail_json, served_inline
from views.api import BadRequest, abort_with, instance_filter, page

bp = Blueprint("media_api", __name__)

# On every stored file, whatever its type: no type sniffing, no scripts, no
# subresources, a unique origin if a browser renders it anyway, and no
# embedding from other sites.
FILE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _media_or_404(media_id: int) -> MediaFile:
    media = MediaFile.get_or_none(MediaFile.id == media_id)
    if media is None:
        abort_with(404, say("error.no_media", id=media_id))
    return media


def _detail(media: MediaFile) -> dict:
    attempts = MediaAttempt.select().where(MediaAttempt.media == media.id).order_by(MediaAttempt.id)
    return media_detail_json(media, attempts)


@bp.get("/api/media")
def list_media():
    query = MediaFile.select()
    state = request.args.get("status") or request.args.get("state")
    if state:
        if state not in MediaFile.STATES:
            raise BadRequest(say("error.one_of", name="status", choices=", ".join(MediaFile.STATES)))
        query = query.where(MediaFile.state == state)
    if request.args.get("type"):
        query = query.where(MediaFile.media_type == request.args["type"])
    query = instance_filter(query, MediaFile.instance)
    rows, next_before = page(query, MediaFile)
    return jsonify(items=[media_detail_json(row) for row in rows], next_before_id=next_before)


@bp.get("/api/media/<int:media_id>")
def show_media(media_id: int):
    return jsonify(_detail(_media_or_404(media_id)))


@bp.get("/api/media/<int:media_id>/file")
def media_file(media_id: int):
    media = _media_or_404(media_id)
    if media.state != "done" or not media.local_path:
        abort_with(404, say("error.media_not_downloaded", id=media_id, state=say(f"state.{media.state}")))
    media_dir = Path(current_app.config["MEDIA_DIR"]).resolve()
    path = (media_dir / media.local_path).resolve()
    if not path.is_relative_to(media_dir) or not path.is_file():
        abort_with(404, say("error.media_file_missing", id=media_id))
    # The sender declares the mimetype: only the allow-list is served as itself and
    # inline; anything else (HTML, SVG, XML, scripts, unknown) is a bare download.
    inline = served_inline(media.mimetype)
    response = send_file(path, mimetype=bare_mimetype(media.mimetype) if inline else "application/octet-stream",
                         as_attachment=not inline, download_name=path.name, conditional=True)
    response.headers.update(FILE_SECURITY_HEADERS)
    return response


@bp.post("/api/media/<int:media_id>/retry")
def retry_media(media_id: int):
    media = _media_or_404(media_id)
    if not MediaFile.retry(media.id):
        current = MediaFile.get_by_id(media.id)
        return jsonify(error_body(say("error.media_not_retryable", id=media_id, state=say(f"state.{current.state}")),
                                  _detail(current))), 409
    current_app.extensions["zaphook.media"].notify()
    return jsonify(_detail(MediaFile.get_by_id(media.id))), 202
