"""Media downloads in the background: a pool of worker threads inside the server process.

Each worker claims a due ``MediaFile`` row with one conditional UPDATE (a
lease it renews while it works), fetches the bytes with :mod:`storage.fetch`
and settles the row: ``done``, ``failed`` or ``expired`` with a reason, or
back to ``pending`` with a back-off when the trouble may pass. A row whose
worker died (crash, power cut) is taken over when its lease runs out, so a
restart resumes every pending and interrupted download.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Optional

from codes import Text, params_json, say
from handlers import REGISTRY
from models import Chat, DeploymentFact, Instance, MediaAttempt, MediaFile, Message, db, still_bound, utcnow
from storage import names
from storage.fetch import FetchConfig, MediaJob, Outcome, fetch
from storage.files import remove_stale_temp_files, remove_temp_files

log = logging.getLogger(__name__)

# A row left in progress by another worker of the same content is looked at again this much later.
WAIT_FOR_TWIN = timedelta(seconds=1)


MEDIA_DIR_MARKER = ".zaphook-database"


def check_media_dir(media_dir: Path) -> tuple[bool, Text]:
    """Whether MEDIA_DIR is this database's (and so the one every process shares), and why not.

    The folder keeps the database's id in a marker file, written the first
    time. A folder marked by another database, or a new unmarked folder while
    the database already has stored files (a process started with a MEDIA_DIR
    of its own), is not the shared one: files written there are missing for
    the other processes, and theirs are missing here.
    """
    database_id = DeploymentFact.database_id()
    marker = media_dir / MEDIA_DIR_MARKER
    folder = str(media_dir)
    try:
        if marker.is_file():
            found = marker.read_text(encoding="utf-8").strip()
            if found != database_id:
                return False, say("qa.media_dir.other_database", folder=folder, found=found[:8],
                                      expected=database_id[:8])
            return True, say("qa.media_dir.ours", folder=folder)
        if MediaFile.select().where(MediaFile.local_path.is_null(False)).exists():
            return False, say("qa.media_dir.not_shared", folder=folder)
        media_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(database_id + "\n", encoding="utf-8")
    except OSError as exc:
        return False, say("qa.media_dir.error", folder=folder, error=exc.strerror or str(exc))
    return True, say("qa.media_dir.marked", folder=folder)


def error_columns(text: Optional[Text], english: Optional[str] = None) -> dict:
    """A row's error columns: the English sentence, and the same reason as a code with its parameters."""
    if text is None:
        return {"error": english, "error_code": None, "error_params": None}
    return {"error": english if english is not None else text.english, "error_code": text.code,
            "error_params": json.dumps(params_json(text.params), ensure_ascii=False)}


class Stopping(Exception):
    """The pool is shutting down: give the row back untouched."""


class LeaseLost(Exception):
    """Another worker took the row over (this one stalled past its lease)."""


class MediaWorkers:
    """The download pool, kept in ``app.extensions["zaphook.media"]``."""

    def __init__(self, settings: Mapping[str, Any], database=None) -> None:
        self.settings = settings
        self.database = database  # the app's own database (the models' proxy may be rebound)
        self.size = int(settings["MEDIA_WORKERS"])
        self.data_dir = Path(settings["DATA_DIR"])
        self.media_dir = Path(settings["MEDIA_DIR"])
        self.lease_seconds = float(settings["MEDIA_LEASE_SECONDS"])
        self.retry_seconds = float(settings["MEDIA_RETRY_SECONDS"])
        self.max_attempts = int(settings["MEDIA_MAX_ATTEMPTS"])
        self.config = FetchConfig.from_settings(settings, api_base_urls=REGISTRY.api_base_urls(settings),
                                                public_hosts=REGISTRY.media_hosts())
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.poll_seconds = min(2.0, self.lease_seconds / 2)
        self._stop = threading.Event()
        self._work = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self.size == 0 or self._threads:
            return
        self.media_dir.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temp_files(self.media_dir, self.lease_seconds)
        if removed:
            log.info("removed %d unfinished download file(s) left by an earlier run", removed)
        for number in range(self.size):
            thread = threading.Thread(target=self._run, name=f"zaphook-media-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """New media rows were committed: wake an idle worker now instead of at its next poll."""
        self._work.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the workers; a download in progress is abandoned and its row given back as pending."""
        self._stop.set()
        self._work.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        if self._threads:
            log.warning("%d media worker(s) did not stop within %.0f s: their downloads are given back",
                        len(self._threads), timeout)
            if still_bound(self.database):
                with db.connection_context():
                    MediaFile.give_back(self.owner)

    @property
    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def as_json(self) -> dict:
        return {"workers": self.size, "alive": self.alive, "media_dir": str(self.media_dir)}

    # --- the worker loop --------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not still_bound(self.database):
                log.debug("media worker stops: its app's database is no longer bound")
                return
            try:
                with db.connection_context():
                    row = MediaFile.claim_next(self.owner, self.lease_seconds)
                    if row is not None:
                        self.process(row)
            except Exception:  # noqa: BLE001 - a worker must outlive any one bad row or outage
                log.exception("media worker error; going on")
                self._stop.wait(self.poll_seconds)
                continue
            if row is None:
                self._work.wait(self._idle_seconds())
                self._work.clear()

    def _idle_seconds(self) -> float:
        """Sleep until the next retry is due, or the poll interval (other processes add work too)."""
        try:
            with db.connection_context():
                wait = MediaFile.seconds_until_due()
        except Exception:  # noqa: BLE001 - an unreadable queue is retried at the poll interval
            return self.poll_seconds
        return self.poll_seconds if wait is None else max(0.01, min(wait, self.poll_seconds))

    def process(self, row: MediaFile) -> None:
        """Fetch one claimed row and settle it."""
        message = Message.get_by_id(row.message_id)
        instance = Instance.get_by_id(row.instance_id)
        if row.content_key:
            twin = MediaFile.stored_copy(row.content_key, row.id)
            if twin is None and MediaFile.in_flight(row.content_key, row.id):
                # The same content is downloading for another message: wait for it, fetch it once.
                row.settle(self.owner, "pending", attempts=MediaFile.attempts - 1,
                           next_attempt_at=utcnow() + WAIT_FOR_TWIN)
                return
        else:
            twin = None
        try:
            job = self.job_for(row, message, instance, twin)
            target = self.target_for(row, message, instance)
        except ValueError as exc:
            row.settle(self.owner, "failed", **error_columns(say("media_error.cannot_file", reason=str(exc))))
            return
        tag = f"{row.id}-"
        remove_temp_files(target.parent, tag)  # a crashed earlier attempt's half file
        try:
            outcome = fetch(job, target, self.config, self._ticker(row), temp_tag=tag)
        except Stopping:
            row.settle(self.owner, "pending", attempts=MediaFile.attempts - 1)
            return
        except LeaseLost:
            log.warning("media %s: taken over by another worker", row.id)
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the row, retried like any passing error
            log.exception("media %s: unexpected error", row.id)
            why = say("media_error.internal", error=type(exc).__name__)
            outcome = Outcome("retry", error=why.english, text=why)
        self.settle(row, outcome, target)

    def _ticker(self, row: MediaFile):
        """Between chunks: stop when asked, and renew the lease a few times per lease period."""
        clock = {"renewed": utcnow()}
        period = timedelta(seconds=self.lease_seconds / 3)

        def tick() -> None:
            if self._stop.is_set():
                raise Stopping()
            now = utcnow()
            if now - clock["renewed"] >= period:
                if not row.renew_lease(self.owner, self.lease_seconds):
                    raise LeaseLost()
                clock["renewed"] = now
        return tick

    def settle(self, row: MediaFile, outcome: Outcome, target: Path) -> None:
        gave_up = outcome.state == "retry" and row.attempts >= self.max_attempts
        if gave_up and outcome.attempts:
            outcome.attempts[-1].outcome = "failed"
        if outcome.attempts:
            MediaAttempt.insert_many([
                dict(media=row.id, round=row.attempts, way=attempt.way, outcome=attempt.outcome,
                     http_status=attempt.http_status, error=attempt.error, size=attempt.size,
                     started_at=attempt.started_at, finished_at=attempt.finished_at)
                for attempt in outcome.attempts
            ]).execute()
        if outcome.state == "done":
            row.settle(self.owner, "done", local_path=str(target.relative_to(self.media_dir)),
                       stored_size=outcome.size, stored_sha256=outcome.sha256, way=outcome.way,
                       error=None, error_code=None, error_params=None, failed_check=None, next_attempt_at=None)
            log.info("media %s: %s saved via %s (%s bytes)", row.id, row.media_type, outcome.way, outcome.size)
        elif outcome.state == "retry" and not gave_up:
            delay = self.retry_seconds * (2 ** (row.attempts - 1)) * random.uniform(0.8, 1.2)
            row.settle(self.owner, "pending", **error_columns(outcome.text, outcome.error),
                       next_attempt_at=utcnow() + timedelta(seconds=delay))
            log.info("media %s: attempt %s of %s failed (%s); next in %.1f s",
                     row.id, row.attempts, self.max_attempts, outcome.error, delay)
        else:
            state = "failed" if outcome.state == "retry" else outcome.state
            error = outcome.error or "failed"
            text = outcome.text or say("media_error.failed", reason=error)
            if outcome.state == "retry":
                error = f"gave up after {row.attempts} attempts: {error}"
                text = say("media_error.gave_up", count=row.attempts, reason=text)
            row.settle(self.owner, state, **error_columns(text, error), failed_check=outcome.failed_check,
                       next_attempt_at=None)
            log.warning("media %s: %s: %s", row.id, state, error)

    # --- what to fetch and where it goes ------------------------------------------

    def job_for(self, row: MediaFile, message: Message, instance: Instance,
                twin: Optional[MediaFile]) -> MediaJob:
        base, token = instance.api_access(self.settings)
        provider = REGISTRY.get(instance.provider)
        api = provider.api if provider is not None else None
        chat = Chat.get_by_id(message.chat_id)
        copy_from = self.media_dir / twin.local_path if twin is not None else None
        return MediaJob(
            provider=instance.provider,
            instance_external_id=instance.external_id,
            media_type=row.media_type,
            provider_message_id=message.provider_message_id,
            chat_jid=chat.jid,
            from_me=message.from_me,
            mimetype=row.mimetype,
            file_length=row.file_length,
            media_key=row.media_key,
            direct_path=row.direct_path,
            url=row.url,
            file_sha256=row.file_sha256,
            file_enc_sha256=row.file_enc_sha256,
            media_id=row.media_id,
            inline_file=self.data_dir / row.inline_path if row.inline_path else None,
            copy_from=copy_from if copy_from is not None and copy_from.is_file() else None,
            copy_sha256=twin.stored_sha256 if twin is not None else None,
            api_base_url=base,
            api_token=token,
            api_way=provider.media if provider is not None else None,
            api_way_name=instance.provider,
            api_settings_hint=f"{api.base_url_setting} and {api.token_setting}" if api else None,
        )

    def target_for(self, row: MediaFile, message: Message, instance: Instance) -> Path:
        """Where the row's file goes: where the row already says, else its place in today's layout.

        A row that names a stored file (``local_path``, relative to the media
        folder) keeps it there, whichever layout filed it; only a row with no
        file yet is placed by :func:`storage.names.media_path`, under the
        provider's instance id.
        """
        if row.local_path:
            return self.stored_path(row.local_path)
        file_name = names.media_file_name(
            instance.provider, message.provider_message_id, row.media_type, row.mimetype, message.timestamp,
            row.file_name if row.media_type == "document" else None,
        )
        return names.media_path(self.media_dir, instance.client_id, instance.external_id, row.media_type, file_name)

    def stored_path(self, local_path: str) -> Path:
        """A row's ``local_path`` under the media folder; ValueError if it would lead outside it."""
        path = self.media_dir / local_path
        root = self.media_dir.resolve()
        resolved = path.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise ValueError(f"{local_path} is not inside {self.media_dir}")
        return path
