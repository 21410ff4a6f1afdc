"""A push service that misbehaves, and a flood: retries honour Retry-After and end in one delivery
with the TTL that is left (none once it ran out), a hanging service is cut at web_push_timeout
without stalling Prosody, repeated client errors disable a subscription, and 1,000 messages give a
bounded number of pushes while XMPP pings stay fast."""

import asyncio
import time

import pytest

from harness import webpush
from harness.pushservice import Answer, PushService
from harness.xmpp import is_result

BOB = "bob@localhost"
pytestmark = [pytest.mark.hardening, pytest.mark.push]


async def offline_bob(w, *answers):
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob, *answers)
    await bob.close()
    return subscription, key


async def test_429_with_retry_after_is_retried_once_and_delivered(world):
    w = world()
    subscription, key = await offline_bob(w, Answer(429, {"Retry-After": "2"}))
    alice = await w.client("alice")
    w.send(alice, BOB, "retry me")
    first, second = await w.exactly(subscription, 2, timeout=15)
    gap = second.received - first.received
    assert gap >= 1.8, f"retried {gap:.2f}s after a Retry-After of 2s"
    for request in (first, second):
        assert w.verify(request, subscription, key).notification["account"] == BOB
    await w.close_all()


async def test_retried_push_carries_the_ttl_that_is_left(world):
    """TTL header of a retry: web_push_ttl less the time the push has waited (issue 11)."""
    ttl = 3600
    w = world({"web_push_ttl": ttl})
    subscription, key = await offline_bob(w, Answer(503, {"Retry-After": "4"}))
    alice = await w.client("alice")
    w.send(alice, BOB, "late but not stale")
    first, second = await w.exactly(subscription, 2, timeout=15)
    w.verify(second, subscription, key)
    assert ttl - 1 <= int(first.headers["ttl"]) <= ttl, f"first attempt's TTL {first.headers['ttl']}"
    waited = second.received - first.received
    assert waited >= 3.8, f"retried {waited:.2f}s after a Retry-After of 4s"
    left = int(second.headers["ttl"])
    assert ttl - waited - 2 <= left <= ttl - waited + 1, f"TTL {left} after waiting {waited:.1f}s of {ttl}"
    await w.close_all()


async def test_hanging_origin_holds_up_no_other_and_a_push_that_waited_carries_the_ttl_left(world):
    """One worker, busy with a push service that hangs: a push to another push service still goes
    out at once (a stuck request stops holding up healthy origins), and whenever it goes out, its
    TTL is web_push_ttl less the time it waited (issue 11)."""
    ttl = 3600
    slow = PushService()
    try:
        w = world({"web_push_ttl": ttl, "web_push_workers": 1, "web_push_timeout": 10}, users=("alice", "bob", "carol"))
        carol = await w.client("carol")
        hanging = webpush.Subscription.new(slow.endpoint(Answer(201, delay=5)))
        assert is_result(await carol.enable(hanging))
        await carol.close()
        subscription, key = await offline_bob(w)
        alice = await w.client("alice")
        w.send(alice, "carol@localhost", "to the hanging service")
        await slow.arrivals(1, hanging.endpoint, timeout=5)
        sent = time.monotonic()
        w.send(alice, BOB, "to a healthy service")
        [request] = await w.pushes(subscription, 1, timeout=15)
        w.verify(request, subscription, key)
        problems = []
        waited = request.received - sent
        if waited > 2.5:
            problems.append(f"the healthy push waited {waited:.1f}s behind the hanging one")
        left = int(request.headers["ttl"])
        if not ttl - waited - 2 <= left <= ttl - waited + 1:
            problems.append(f"TTL {left} after waiting {waited:.1f}s of {ttl}")
        assert not problems, "\n".join(problems)
        await w.close_all()
    finally:
        slow.close()


async def test_push_whose_ttl_ran_out_is_not_sent(world):
    """The push service asks to come back after the notification's TTL: it is not sent again."""
    w = world({"web_push_ttl": 3})
    subscription, _key = await offline_bob(w, Answer(503, {"Retry-After": "5"}))
    alice = await w.client("alice")
    w.send(alice, BOB, "soon stale")
    await w.exactly(subscription, 1, settle=7)
    await w.close_all()


async def test_500_then_201_is_retried_and_delivered(world):
    w = world()
    subscription, key = await offline_bob(w, Answer(500))
    alice = await w.client("alice")
    w.send(alice, BOB, "server trouble")
    first, second = await w.exactly(subscription, 2, timeout=20)
    assert (first.answered_with, second.answered_with) == (500, 201)
    w.verify(second, subscription, key)
    await w.close_all()


async def test_hanging_push_service_is_cut_at_the_timeout(world):
    w = world({"web_push_timeout": 2})
    subscription, key = await offline_bob(w, Answer(201, delay=6))
    alice = await w.client("alice")
    w.send(alice, BOB, "slow service")
    [first] = await w.pushes(subscription, 1, timeout=5)
    # While the request hangs, Prosody's own thread is free.
    for _ in range(5):
        assert await alice.ping() < 0.5
        await asyncio.sleep(0.2)
    # Cut at the timeout, then retried (a network error) and delivered.
    first, second = await w.exactly(subscription, 2, timeout=25)
    assert second.received - first.received >= 1.5, "retried before the timeout ran out"
    w.verify(second, subscription, key)
    await w.close_all()


async def test_repeated_client_errors_disable_the_subscription(world):
    w = world({"push_max_errors": 2})
    subscription, _key = await offline_bob(w, Answer(400), Answer(400), Answer(400))
    alice = await w.client("alice")
    w.send(alice, BOB, "one")
    await w.pushes(subscription, 1)
    w.send(alice, BOB, "two")
    await w.pushes(subscription, 2)
    await asyncio.sleep(0.5)
    w.send(alice, BOB, "three")
    await w.exactly(subscription, 2)
    await w.close_all()


async def test_flood_gives_bounded_pushes_and_prosody_stays_responsive(world):
    w = world()
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    ping_client = await w.client("alice", resource="pinger")
    count = 1000  # the hardening issue's flood
    start = time.monotonic()
    for i in range(count):
        w.send(alice, BOB, f"flood {i}")
    worst = 0.0
    while time.monotonic() - start < 4:
        worst = max(worst, await ping_client.ping())
        await asyncio.sleep(0.1)
    assert worst < 1.0, f"an XMPP ping took {worst:.2f}s during the flood"
    await asyncio.sleep(2)
    requests = w.push.requests_for(subscription.endpoint)
    counts = [w.verify(r, subscription, key).notification["message-count"] for r in requests]
    print(f"flood: {count} messages -> {len(requests)} push requests {counts}, worst ping {worst * 1000:.0f} ms")
    # A burst is coalesced (web_push_min_interval): a handful of pushes, not one per message, and
    # their message-count adds up to every message, each counted once.
    assert 1 <= len(requests) <= 20, f"{len(requests)} pushes for {count} messages"
    assert sum(counts) == count, f"message-counts {counts} do not add up to {count}"
    await w.close_all()
