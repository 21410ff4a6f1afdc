"""The harness itself, without mod_web_push: the chosen Prosody starts on loopback with the chosen
storage, and slixmpp logs in. When this fails, the module tests after it say nothing."""

from harness.prosody import BASE_MODULES
from harness.xmpp import connect


async def test_prosody_starts_and_slixmpp_logs_in(make_prosody):
    prosody = make_prosody(modules=[m for m in BASE_MODULES if m != "web_push"])
    alice = await connect(prosody, "alice", smacks=True)
    bob = await connect(prosody, "bob")
    alice.message(bob.boundjid.bare, "hello")
    message = await bob.next_message()
    assert message["body"] == "hello"
    assert await alice.ping() < 1.0
    # The accounts live in the storage asked for, not silently in files.
    stores = prosody.backend.sql_stores()
    if stores is None:
        assert "localhost/accounts/alice.dat" in prosody.backend.files(prosody.data_path)
    else:
        assert ("localhost", "alice", "accounts") in stores, stores
    await alice.close()
    await bob.close()
