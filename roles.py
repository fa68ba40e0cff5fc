"""Deployment-wide roles: one process at a time is the campaign sender, the tunnel owner, the registrar.

Several ``server.py`` processes on one database (see the README's "Running
several processes") must not each send campaigns at the configured rate, each
open a tunnel, or each point the providers at themselves. Each role is a lease
in the database (:class:`models.RoleLease`): the process that holds it renews
it every third of ``ROLE_LEASE_SECONDS``; when it stops cleanly it gives the
role back at once, and when it dies (``kill -9``, a crash, a lost machine) its
lease runs out and another process takes the role at its next look.

A lease rather than a PostgreSQL advisory lock: it works the same on SQLite,
it also frees the role of a process that hangs without dying, and every
process can see who holds what (``/status``) and read what the holder tells
(the tunnel's public URL).

The holder checks :meth:`Roles.holds` before acting; it says no a little
before the lease expires in the database (the margin covers a renewal that
is late), so two processes never both believe they hold a role. What must
never happen twice whatever the leases say (a contact sent twice, the rate
exceeded) is guarded in the database itself: a contact is claimed with one
conditional UPDATE, and each send takes a send slot (:class:`models.SendSlot`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

from models import RoleLease, database_clock, is_transient, still_bound, write_transaction

log = logging.getLogger(__name__)

CAMPAIGN_SENDER = "campaign-sender"
TUNNEL_OWNER = "tunnel-owner"
REGISTRAR = "registrar"
ALL_ROLES = (CAMPAIGN_SENDER, TUNNEL_OWNER, REGISTRAR)


def process_name() -> str:
    """Who this process is, as the leases and /status show it: host, pid and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Wanted:
    name: str
    on_gain: Optional[Callable[[], None]] = None
    on_lose: Optional[Callable[[], None]] = None
    while_held: Optional[Callable[[], None]] = None
    held_until: float = 0.0  # monotonic: after this, we no longer count on the lease
    announced: bool = False  # whether on_gain ran last (and on_lose not since)

    def held(self) -> bool:
        return time.monotonic() < self.held_until


class Roles:
    """The roles this process competes for, and the thread that claims and renews their leases."""

    def __init__(self, database, lease_seconds: float, holder: Optional[str] = None) -> None:
        self.database = database
        self.lease_seconds = float(lease_seconds)
        self.renew_seconds = self.lease_seconds / 3
        self.holder = holder or process_name()
        self._wanted: dict[str, _Wanted] = {}
        self._lock = threading.Lock()
        # One look at a time: want() looks from the caller's thread while the renewing thread may be
        # looking too, and two looks at once would both see "held, not announced" and gain it twice.
        self._looking = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def want(self, name: str, *, on_gain: Optional[Callable[[], None]] = None,
             on_lose: Optional[Callable[[], None]] = None,
             while_held: Optional[Callable[[], None]] = None) -> bool:
        """Compete for a role from now on; try once at once. Whether this process holds it now.

        ``on_gain`` and ``on_lose`` run when the role comes and goes, each in a
        thread of its own (opening a tunnel takes seconds; renewing the other
        leases must not wait for it); ``while_held`` runs at each renewal while
        the role is held, in the renewing thread, so it must be quick.
        """
        with self._lock:
            wanted = self._wanted.setdefault(name, _Wanted(name))
            wanted.on_gain, wanted.on_lose, wanted.while_held = on_gain, on_lose, while_held
        self._look(wanted)
        return wanted.held()

    def holds(self, name: str) -> bool:
        wanted = self._wanted.get(name)
        return wanted is not None and wanted.held()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zaphook-roles", daemon=True)
            self._thread.start()

    def give_back(self, name: str) -> None:
        """Stop competing for one role and free it at once (the campaign sender when it shuts down)."""
        with self._looking:  # a look in flight must not claim the lease again after it is freed
            wanted = self._wanted.pop(name, None)
            if wanted is not None:
                wanted.held_until = 0.0
                self._release(name)

    def stop(self) -> None:
        """Stop renewing and give every role back, so another process takes over at its next look."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.renew_seconds + 5)
        for wanted in list(self._wanted.values()):
            wanted.held_until = 0.0
        released = self._release()
        if released:
            log.info("gave back %s role(s) for another process to take", released)

    def _release(self, name: Optional[str] = None) -> int:
        """Delete this process's lease of one role (or of all): how many were given back."""
        try:
            with self.database.connection_context(), write_transaction():
                return RoleLease.release(self.holder, name)
        except Exception as exc:  # noqa: BLE001 - stopping goes on; the leases run out by themselves
            log.warning("could not give the roles back (they expire within %.0f s): %s", self.lease_seconds, exc)
            return 0

    def tell(self, name: str, detail: Optional[str]) -> None:
        """Publish what the other processes should know about a role this process holds (the tunnel's URL)."""
        with self.database.connection_context(), write_transaction():
            RoleLease.tell(name, self.holder, detail)

    def told(self, name: str) -> Optional[str]:
        """What the current holder of a role published, whichever process it is (needs a connection)."""
        lease = RoleLease.current(name, database_clock())
        return lease.detail if lease is not None else None

    def as_json(self) -> dict:
        """Each role: who holds it, whether it is this process, and for how long (needs a connection)."""
        now = database_clock()
        leases = {lease.name: lease for lease in RoleLease.select().where(RoleLease.expires_at >= now)}
        roles = {}
        for name in ALL_ROLES:
            lease = leases.get(name)
            roles[name] = {
                "holder": lease.holder if lease else None,
                "here": bool(lease and lease.holder == self.holder),
                "wanted_here": name in self._wanted,
                "expires_in": round(lease.expires_at - now, 1) if lease else None,
            }
        return {"process": self.holder, "lease_seconds": self.lease_seconds, "roles": roles}

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            if not still_bound(self.database):
                return
            for wanted in list(self._wanted.values()):
                if self._stop.is_set():
                    return
                self._look(wanted)

    def _look(self, wanted: _Wanted) -> None:
        """Claim or renew one role, and run its callbacks when whether we hold it has changed."""
        with self._looking:
            if self._wanted.get(wanted.name) is wanted:  # not given back meanwhile
                self._look_now(wanted)

    def _look_now(self, wanted: _Wanted) -> None:
        asked_at = time.monotonic()
        try:
            with self.database.connection_context(), write_transaction():
                got: Optional[bool] = RoleLease.claim(wanted.name, self.holder, database_clock(),
                                                      self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - an outage: the lease we had lapses by itself
            level = logging.INFO if is_transient(exc) else logging.WARNING
            log.log(level, "role %s: could not claim or renew the lease: %s", wanted.name, exc)
            got = None
        if got:
            # Counted from before the claim, minus a margin for a renewal that comes late.
            wanted.held_until = asked_at + self.lease_seconds - self.renew_seconds
        elif got is False:
            wanted.held_until = 0.0
        held = wanted.held()
        if held and not wanted.announced:
            log.info("this process is now the %s", wanted.name)
            self._call(wanted.on_gain, wanted.name)
        elif wanted.announced and not held:
            log.warning("this process is no longer the %s", wanted.name)
            self._call(wanted.on_lose, wanted.name)
        wanted.announced = held
        if held and wanted.while_held is not None:
            try:
                wanted.while_held()
            except Exception:  # noqa: BLE001 - a role's work must not stop the leases
                log.exception("role %s: its work failed", wanted.name)

    def _call(self, callback: Optional[Callable[[], None]], name: str) -> None:
        if callback is None:
            return

        def run() -> None:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a role's work must not stop the leases
                log.exception("role %s: its work failed", name)

        threading.Thread(target=run, name=f"zaphook-role-{name}", daemon=True).start()


def deployment_public_url(settings, roles: Optional[Roles], tunnel) -> Optional[str]:
    """The URL the providers should call: PUBLIC_URL, this process's tunnel, or the tunnel owner's.

    Reads the tunnel owner's lease: call with a database connection open.
    """
    if settings.get("PUBLIC_URL"):
        return settings["PUBLIC_URL"]
    if tunnel is not None and tunnel.public_url:
        return tunnel.public_url
    return roles.told(TUNNEL_OWNER) if roles is not None else None
