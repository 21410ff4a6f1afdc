"""`prosodyctl mod_web_push key|import|rotate HOST`: the admin's view of the host's VAPID key,
checked against what disco publishes and what push requests are signed with. The key is read from
the output by its form, never by its line: on a machine without lua-unbound Prosody prints a banner
first (the matrix's SQLite runs hide lua-unbound to check exactly that)."""

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import webpush
from harness.prosody import key_in_output

BOB = "bob@localhost"
pytestmark = pytest.mark.storage


def ctl(prosody, *args):
    """The key a `prosodyctl mod_web_push` command printed, recognised by its form: Prosody may print
    banners before it (lua-unbound missing: the SQLite runs hide it) and the command a warning after."""
    result = prosody.prosodyctl("mod_web_push", *args)
    assert result.returncode == 0, f"prosodyctl mod_web_push {' '.join(args)}: {result.stdout}{result.stderr}"
    return key_in_output(result.stdout)


async def test_key_command_shows_the_disco_key(world):
    w = world()
    alice = await w.client("alice")
    key = await alice.vapid_key()
    assert ctl(w.prosody, "key", "localhost") == key
    await w.close_all()


async def test_import_and_rotate_change_the_key_on_purpose(world):
    w = world()
    alice = await w.client("alice")
    old = await alice.vapid_key()
    await alice.close()

    # Import a PKCS#8 PEM made elsewhere (here by `cryptography`).
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = os.path.join(w.prosody.workdir, "vapid.pem")
    with open(path, "wb") as f:
        f.write(pem)
    expected = webpush.b64url(private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    assert ctl(w.prosody, "import", "localhost", path) == expected
    w.prosody.restart()
    bob = await w.client("bob")
    assert await bob.vapid_key() == expected != old
    # Pushes are signed with the imported key.
    subscription = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "signed with the imported key")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, expected)
    await alice.close()

    rotated = ctl(w.prosody, "rotate", "localhost")
    assert rotated not in (expected, old)
    w.prosody.restart()
    bob = await w.client("bob")
    assert await bob.vapid_key() == rotated
    await w.close_all()
