"""Dead push services (issue 11): a subscription whose endpoint refuses connections, never answers
(cut at web_push_timeout) or fails the TLS handshake. Each push to it is tried a few times and then
counts one error (one per push, however many attempts it took); after push_max_errors consecutive
failed pushes the subscription is disabled: gone from storage, web_push/unregistered with reason
"errors", and never contacted again. A healthy subscription of the same account is unaffected."""

import asyncio
import time

import pytest

from harness.deadhost import DeadHost
from harness.paths import BUILD, TEST_MODULES
from harness.prosody import BASE_MODULES

# Neither `push` nor `storage`: what is counted depends neither on how Prosody was started (the
# daemonized runs cover retries and hanging origins through test_hardening and test_restarts) nor
# on the back end (a disabled subscription leaves through the one write path that disable and
# gone, tested on every back end, use). On internal storage only, to keep the matrix short.
pytestmark = pytest.mark.hardening

MAX_ERRORS = 3
# A short TTL, so each push gives up (failed on the network until its TTL ran out) within seconds;
# long enough for two attempts or more of each.
TTL = 3
TIMEOUT = 1
DONE = TTL + 2  # seconds after which a push to a dead host has surely given up
OPTIONS = {
    "push_max_errors": MAX_ERRORS, "web_push_ttl": TTL, "web_push_timeout": TIMEOUT,
    "plugin_paths": [BUILD, TEST_MODULES],
}
# Who gets which kind of dead host.
ACCOUNTS = {"bob": "refuse", "carol": "hang", "dave": "tls"}


def unregistered(w, user):
    return f"e2e: unregistered for {user}: errors" in w.prosody.log_text()


async def test_dead_hosts_count_one_error_per_push_and_are_disabled_after_max_errors(world):
    hosts = {user: DeadHost(mode) for user, mode in ACCOUNTS.items()}
    try:
        await run_dead_hosts(world, hosts)
    finally:
        for host in hosts.values():
            host.close()


async def run_dead_hosts(world, hosts):
    w = world(OPTIONS, users=("alice", *ACCOUNTS), modules=BASE_MODULES + ["e2e_hooks"])
    store = w.prosody.backend
    dead = {}
    healthy = None
    for user, host in hosts.items():
        client = await w.client(user)
        dead[user] = await w.subscribe(client, endpoint=host.endpoint())
        if user == "bob":
            healthy = await w.subscribe(client)  # bob's other browser, on a working push service
        await client.close()
    alice = await w.client("alice")

    async def round_of_pushes(n):
        for user in ACCOUNTS:
            w.send(alice, f"{user}@localhost", f"round {n}")
        await asyncio.sleep(DONE)

    # Two failed pushes each: below push_max_errors, though each push made more than one attempt.
    for n in (1, 2):
        await round_of_pushes(n)
    problems = []
    for user in ("carol", "dave"):
        attempts = len(hosts[user].connections())
        if attempts < 3:
            problems.append(f"{ACCOUNTS[user]}: {attempts} attempt(s) for 2 pushes: a network failure must be retried "
                            f"(and this test needs more attempts than pushes to tell them apart)")
    for user in ACCOUNTS:
        if unregistered(w, user) or not store.holding(dead[user].endpoint, w.prosody.data_path):
            problems.append(f"{ACCOUNTS[user]}: disabled after 2 failed pushes (push_max_errors = {MAX_ERRORS}): "
                            "errors were counted per attempt, not per push")
    assert not problems, "\n".join(problems)

    # The third failed push disables each of them.
    await round_of_pushes(3)
    deadline = time.monotonic() + 10
    while not all(unregistered(w, user) for user in ACCOUNTS) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    for user, mode in ACCOUNTS.items():
        if not unregistered(w, user):
            problems.append(f"{mode}: not disabled (web_push/unregistered, reason errors) after {MAX_ERRORS} failed pushes")
        elif store.holding(dead[user].endpoint, w.prosody.data_path):
            problems.append(f"{mode}: still in storage after it was disabled")
    assert not problems, "\n".join(problems)

    # Never contacted again; the healthy subscription got every push.
    since = time.monotonic()
    await round_of_pushes(4)
    for user in ("carol", "dave"):
        assert hosts[user].connections(since=since) == [], f"{ACCOUNTS[user]}: contacted after it was disabled"
    assert len(w.push.requests_for(healthy.endpoint)) >= 4, "bob's healthy subscription missed pushes"
    assert store.holding(healthy.endpoint, w.prosody.data_path), "bob's healthy subscription was dropped"
    await w.close_all()
