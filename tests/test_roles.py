"""Deployment-wide roles and send slots, on the real database (SQLite, or PostgreSQL in CI).

Two Roles objects on one database stand for two processes; the processes
themselves are in tests/test_several_processes.py.
"""

from __future__ import annotations

import threading

import pytest

import models
from models import RoleLease, SendSlot
from roles import CAMPAIGN_SENDER, TUNNEL_OWNER, Roles
from tests.helpers import wait_until


@pytest.fixture
def database(app):
    return app.extensions["zaphook.database"]


@pytest.fixture
def connected(database):
    with database.connection_context():
        yield database


# --- the lease -----------------------------------------------------------------------------------

LEASE_STEPS = [
    # (who claims, at, expected holder afterwards, whether the claim won)
    ("a", 100.0, "a", True),    # free: taken
    ("b", 101.0, "a", False),   # held by a: refused
    ("a", 102.0, "a", True),    # a renews (now until 108)
    ("b", 107.9, "a", False),   # still a's
    ("b", 108.1, "b", True),    # expired: taken over
    ("a", 109.0, "b", False),   # a is too late
]


def test_a_lease_is_taken_when_free_renewed_by_its_holder_and_taken_over_only_when_expired(connected):
    for who, at, holder, won in LEASE_STEPS:
        assert RoleLease.claim("role", who, at, 6.0) is won, (who, at)
        assert RoleLease.get_by_id("role").holder == holder


def test_what_a_holder_tells_is_kept_while_it_renews_and_forgotten_when_another_takes_over(connected):
    RoleLease.claim(TUNNEL_OWNER, "a", 100.0, 6.0)
    assert RoleLease.tell(TUNNEL_OWNER, "a", "https://a.example")
    assert not RoleLease.tell(TUNNEL_OWNER, "b", "https://b.example")  # not b's to tell
    RoleLease.claim(TUNNEL_OWNER, "a", 103.0, 6.0)
    assert RoleLease.current(TUNNEL_OWNER, 104.0).detail == "https://a.example"
    RoleLease.claim(TUNNEL_OWNER, "b", 120.0, 6.0)
    assert RoleLease.current(TUNNEL_OWNER, 121.0).detail is None
    assert RoleLease.current(TUNNEL_OWNER, 200.0) is None  # expired: nobody


def test_a_released_role_is_free_at_once(connected):
    RoleLease.claim(CAMPAIGN_SENDER, "a", 100.0, 6.0)
    RoleLease.claim(TUNNEL_OWNER, "a", 100.0, 6.0)
    assert RoleLease.release("a", CAMPAIGN_SENDER) == 1
    assert RoleLease.claim(CAMPAIGN_SENDER, "b", 100.5, 6.0)
    assert not RoleLease.claim(TUNNEL_OWNER, "b", 100.5, 6.0)


# --- the send slots ------------------------------------------------------------------------------

def test_a_send_takes_both_slots_or_neither(connected):
    one_a_second = {"deployment": 1.0, "instance:1": 3.0}
    assert SendSlot.take(one_a_second, 100.0) is None
    assert SendSlot.take(one_a_second, 100.5) == pytest.approx(2.5)  # both busy: wait for the later
    # Another number is free, the deployment is not yet: nothing is taken.
    assert SendSlot.take({"deployment": 1.0, "instance:2": 3.0}, 100.5) == pytest.approx(0.5)
    assert SendSlot.get_or_none(SendSlot.scope == "instance:2") is None  # rolled back
    assert SendSlot.take({"deployment": 1.0, "instance:2": 3.0}, 101.0) is None
    assert SendSlot.take(one_a_second, 102.0) == pytest.approx(1.0)  # instance 1 waits until 103
    assert SendSlot.take(one_a_second, 103.0) is None


def test_a_slow_send_keeps_the_slots_busy_for_an_interval_after_it_ended(connected):
    assert SendSlot.take({"deployment": 1.0, "instance:1": 1.0}, 100.0) is None
    SendSlot.hold({"deployment": 1.0, "instance:1": 1.0}, 100.7)  # the provider answered 0.7 s later
    assert SendSlot.take({"deployment": 1.0, "instance:1": 1.0}, 101.2) == pytest.approx(0.5)
    SendSlot.hold({"deployment": 0.1}, 100.0)  # never brings a slot earlier
    assert SendSlot.get_by_id("deployment").next_at == pytest.approx(101.7)


def test_threads_racing_for_one_slot_send_once(database):
    winners = []
    barrier = threading.Barrier(8)

    def race():
        barrier.wait()
        with database.connection_context():
            if SendSlot.take({"deployment": 60.0}, 1000.0) is None:
                winners.append(threading.get_ident())

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


# --- the service ---------------------------------------------------------------------------------

def test_one_of_two_processes_holds_a_role_and_the_other_takes_it_when_it_is_given_back(database):
    # A lease long enough that a busy machine never lets the first lapse; the handover is the give-back.
    first, second = Roles(database, 6.0, holder="first"), Roles(database, 6.0, holder="second")
    gained = {"first": threading.Event(), "second": threading.Event()}
    lost = threading.Event()
    assert first.want(TUNNEL_OWNER, on_gain=gained["first"].set, on_lose=lost.set)
    assert not second.want(TUNNEL_OWNER, on_gain=gained["second"].set)
    first.start(), second.start()
    try:
        assert gained["first"].wait(5)
        wait_until(lambda: not second.holds(TUNNEL_OWNER) and first.holds(TUNNEL_OWNER), "first keeps it")
        with database.connection_context():
            assert first.as_json()["roles"][TUNNEL_OWNER]["holder"] == "first"
        first.stop()  # a clean stop: given back, taken at the other's next look
        assert gained["second"].wait(10)
        assert second.holds(TUNNEL_OWNER)
        with database.connection_context():
            assert second.as_json()["roles"][TUNNEL_OWNER] | {"expires_in": None} == {
                "holder": "second", "here": True, "wanted_here": True, "expires_in": None}
    finally:
        first.stop(), second.stop()


def test_a_holder_that_stops_renewing_loses_the_role_to_the_other_after_the_lease(database):
    frozen, alive = Roles(database, 0.6, holder="frozen"), Roles(database, 0.6, holder="alive")
    assert frozen.want(CAMPAIGN_SENDER)  # never started: it claims once and never renews, like a hung process
    taken = threading.Event()
    alive.want(CAMPAIGN_SENDER, on_gain=taken.set)
    alive.start()
    try:
        assert taken.wait(5)
        assert not frozen.holds(CAMPAIGN_SENDER)  # it stopped counting on the lease before it expired
        with database.connection_context():
            assert RoleLease.get_by_id(CAMPAIGN_SENDER).holder == "alive"
    finally:
        alive.stop()


def test_the_sender_holds_its_role_alone_and_gives_it_back_when_it_shuts_down(make_app):
    app = make_app(CAMPAIGN_SENDER=True, ROLE_LEASE_SECONDS=30.0)
    sender = app.extensions["zaphook.campaigns"]
    wait_until(lambda: sender.sends_here, "the only process becomes the sender")
    other = Roles(app.extensions["zaphook.database"], 30.0, holder="other")
    assert not other.want(CAMPAIGN_SENDER)
    assert sender.sends_here
    sender.shutdown()  # gives the role back
    assert other.want(CAMPAIGN_SENDER)
    with app.extensions["zaphook.database"].connection_context():
        assert models.RoleLease.get_by_id(CAMPAIGN_SENDER).holder == "other"
    other.stop()
