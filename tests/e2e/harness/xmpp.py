"""XMPP clients for the tests, made with slixmpp (a client library not written here).

Every wait has a timeout. Web Push requests (enable, disable and the garbage ones) are sent as raw
XML, so the tests say exactly what goes over the wire."""

import asyncio
import time
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

from .prosody import PASSWORD

NS = "urn:xmpp:webpush:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DATA_FORMS = "jabber:x:data"
FORM_TYPE = "http://jabber.org/protocol/webpush#public-key"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Client(slixmpp.ClientXMPP):
    """One XMPP session. `smacks=True` enables stream management with resumption, so that a lost
    TCP connection leaves a hibernated session on the server (what a web client in a closed tab or
    on a sleeping phone leaves)."""

    def __init__(self, jid, password=PASSWORD, smacks=False, plugins=()):
        # Loopback without TLS: SCRAM works unencrypted and sends no password in the clear.
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.enable_plaintext = True
        self.smacks = smacks
        # `plugins`: more of slixmpp's XEP plugins (group chats, bookmarks, markers...).
        for plugin in ("xep_0030", "xep_0199", *plugins):
            self.register_plugin(plugin)
        if smacks:
            self.register_plugin("xep_0198")
        self.messages = asyncio.Queue()
        self._started = self.loop.create_future()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("message", self.messages.put_nowait)

    def _on_session_start(self, _event):
        if not self._started.done():
            self._started.set_result(True)

    def _on_failed_auth(self, _event):
        if not self._started.done():
            self._started.set_exception(RuntimeError(f"authentication failed for {self.boundjid}"))

    async def online(self, port, presence=True, timeout=10):
        self.connect("127.0.0.1", port)
        await asyncio.wait_for(self._started, timeout)
        if self.smacks:
            await self._wait_smacks_enabled(timeout)
        if presence:
            self.send_presence()
            # Presence is processed in order with later stanzas; a ping round trip proves it was.
            await self.ping()
        return self

    async def _wait_smacks_enabled(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.plugin["xep_0198"].sm_id:
            if time.monotonic() > deadline:
                raise TimeoutError("stream management was not enabled with resumption")
            await asyncio.sleep(0.02)

    # -- IQs -----------------------------------------------------------------------------

    async def iq(self, payload_xml, itype="set", to=None, timeout=10):
        """Sends an IQ with a raw XML child; returns the answer (result or error) as an
        ElementTree element. Raises only on timeout."""
        iq = self.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        if payload_xml is not None:
            iq.append(ET.fromstring(payload_xml) if isinstance(payload_xml, str) else payload_xml)
        try:
            answer = await iq.send(timeout=timeout)
        except IqError as error:
            answer = error.iq
        return answer.xml

    async def vapid_key(self, timeout=10):
        """The VAPID public key from disco#info on our own bare JID; also checks the feature."""
        answer = await self.iq(f'<query xmlns="{DISCO_INFO}"/>', itype="get", to=self.boundjid.bare, timeout=timeout)
        assert answer.get("type") == "result", ET.tostring(answer).decode()
        return parse_disco_key(answer)

    async def enable(self, subscription, timeout=10):
        return await self.iq(enable_xml(subscription.endpoint, subscription.p256dh, subscription.auth_b64), timeout=timeout)

    async def disable(self, endpoint, timeout=10):
        child = f"<endpoint>{escape(endpoint)}</endpoint>" if endpoint is not None else ""
        return await self.iq(f'<disable xmlns="{NS}">{child}</disable>', timeout=timeout)

    async def ping(self, timeout=10):
        """XEP-0199 round trip to the server; returns seconds."""
        start = time.monotonic()
        await self.plugin["xep_0199"].ping(jid=self.boundjid.host, timeout=timeout)
        return time.monotonic() - start

    # -- messages ------------------------------------------------------------------------

    def message(self, to, body=None, mtype="chat", extra_xml=None):
        msg = self.Message()
        msg["to"] = to
        msg["type"] = mtype
        if body is not None:
            msg["body"] = body
        if extra_xml:
            msg.append(ET.fromstring(extra_xml))
        msg.send()

    async def next_message(self, timeout=10):
        return await asyncio.wait_for(self.messages.get(), timeout)

    # -- leaving -------------------------------------------------------------------------

    async def close(self, timeout=5):
        """A clean logout: the session ends on the server at once."""
        if self.transport is None:
            return
        self.disconnect(wait=timeout)
        try:
            await asyncio.wait_for(asyncio.shield(self.disconnected), timeout + 1)
        except asyncio.TimeoutError:
            self.abort()

    async def drop(self):
        """The TCP connection is lost without a goodbye (a closed laptop, a killed tab): with
        stream management the server hibernates the session. Every stanza received so far is
        acknowledged first, so the hibernated queue is empty and only what comes next counts."""
        if self.smacks:
            self.plugin["xep_0198"].send_ack()
            await self.ping()
        self.end_session_on_disconnect = False
        self.abort()
        await asyncio.sleep(0)


async def connect(prosody, user, smacks=False, presence=True, resource=None, plugins=()):
    jid = f"{user}@{prosody.host}/{resource or 'e2e-' + user}" if "@" not in user else user
    return await Client(jid, smacks=smacks, plugins=plugins).online(prosody.port, presence=presence)


REGISTER = "jabber:iq:register"


class Registrant(Client):
    """A client that creates its account in-band (XEP-0077, slixmpp's plugin) and then logs in."""

    def __init__(self, jid, password=PASSWORD):
        super().__init__(jid, password)
        self.register_plugin("xep_0077")
        self.plugin["xep_0077"].force_registration = True
        self.add_event_handler("register", self._on_register)

    async def _on_register(self, _form):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=10)
        except IqError as error:
            failure = RuntimeError(f"in-band registration of {self.boundjid.bare} refused: {error.iq['error']['condition']}")
            if not self._started.done():
                self._started.set_exception(failure)


async def register_in_band(prosody, user):
    """Creates the account over XMPP (needs mod_register and allow_registration); returns the
    logged-in client."""
    return await Registrant(f"{user}@{prosody.host}/e2e-{user}").online(prosody.port, presence=False)


async def remove_account_in_band(client, timeout=10):
    """XEP-0077 account removal from the account's own session: the server answers, then ends the
    session. Returns the answer."""
    answer = await client.iq(f'<query xmlns="{REGISTER}"><remove/></query>', timeout=timeout)
    client.end_session_on_disconnect = False
    client.abort()
    return answer


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def enable_xml(endpoint=None, p256dh=None, auth=None):
    """An enable request; a child given as None is left out (for the garbage tests)."""
    children = ""
    for name, value in (("endpoint", endpoint), ("p256dh", p256dh), ("auth", auth)):
        if value is not None:
            children += f"<{name}>{escape(value)}</{name}>"
    return f'<enable xmlns="{NS}">{children}</enable>'


def parse_disco_key(answer):
    query = answer.find(f"{{{DISCO_INFO}}}query")
    assert query is not None, "disco#info answer without query"
    features = {f.get("var") for f in query.findall(f"{{{DISCO_INFO}}}feature")}
    assert NS in features, f"{NS} missing from disco#info features: {sorted(features)}"
    for form in query.findall(f"{{{DATA_FORMS}}}x"):
        fields = {
            field.get("var"): [v.text or "" for v in field.findall(f"{{{DATA_FORMS}}}value")]
            for field in form.findall(f"{{{DATA_FORMS}}}field")
        }
        if fields.get("FORM_TYPE") == [FORM_TYPE]:
            assert form.get("type") == "result", f"form type {form.get('type')!r}"
            values = fields.get("webpush#public-key")
            assert values and len(values) == 1, f"webpush#public-key field: {values!r}"
            return values[0]
    raise AssertionError(f"no {FORM_TYPE} form in disco#info")


def stanza_error(answer):
    """(type, condition, text) of an IQ error answer, or None for a result."""
    if answer.get("type") != "error":
        return None
    error = answer.find("{jabber:client}error")
    assert error is not None, ET.tostring(answer).decode()
    condition, text = None, None
    for child in error:
        if child.tag == f"{{{STANZA_ERRORS}}}text":
            text = child.text
        elif child.tag.startswith(f"{{{STANZA_ERRORS}}}"):
            condition = child.tag.split("}", 1)[1]
    return error.get("type"), condition, text


def is_result(answer):
    return answer.get("type") == "result"
