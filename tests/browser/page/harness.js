// What the browser test calls through Marionette. Everything Web Push here goes through the
// client developer's code in examples/ (imported, not copied); this file only connects to the
// XMPP server with strophe.js and reports back.

import { Strophe, $pres, MemoryStorageBackend } from "strophe.js";
import {
	registerServiceWorker, browserSubscription, enableWebPush, disableWebPush,
} from "/subscribe.js";

// What the service worker posted to this page.
const received = [];
navigator.serviceWorker.addEventListener("message", (event) => received.push(event.data));
// Messages from a worker to a page it does not control are held until this is called.
navigator.serviceWorker.startMessages();

const ready = registerServiceWorker("/service-worker.js");

// A strophe.js connection over WebSocket; resolves once logged in. `connection.closed` resolves
// when it is disconnected.
function connect(service, jid, password, options = {}) {
	return new Promise((resolve, reject) => {
		const connection = new Strophe.Connection(service, { protocol: "ws", ...options });
		connection.closed = new Promise((closed) => {
			connection.connect(jid, password, (status, condition) => {
				if (status === Strophe.Status.CONNECTED) {
					resolve(connection);
				} else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR].includes(status)) {
					reject(new Error(`XMPP connection failed: status ${status} ${condition || ""}`));
				} else if (status === Strophe.Status.DISCONNECTED) {
					closed();
					reject(new Error("XMPP connection closed before login"));
				}
			});
		});
	});
}

// A clean logout: the account is offline on the server once this resolves.
async function disconnect(connection) {
	connection.disconnect("done");
	await Promise.race([connection.closed, new Promise((r) => setTimeout(r, 5000))]);
}

async function subscription() {
	const registration = await ready;
	return registration.pushManager.getSubscription();
}

window.webPushTest = {
	// Resolves once the service worker is active.
	async ready() {
		const registration = await ready;
		return { scope: registration.scope, active: !!registration.active };
	},

	// The browser part alone, with a key from the test (the relay's self-test).
	async subscribeWithKey(serverKey) {
		const registration = await ready;
		return (await browserSubscription(registration, serverKey)).toJSON();
	},

	// What a web client does: log in, discover the key, subscribe, enable; then log out.
	async connectAndEnable(service, jid, password) {
		const registration = await ready;
		const connection = await connect(service, jid, password);
		try {
			const pushSubscription = await enableWebPush(connection, registration);
			const key = pushSubscription.options.applicationServerKey;
			return {
				subscription: pushSubscription.toJSON(),
				serverKey: btoa(String.fromCharCode(...new Uint8Array(key)))
					.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
			};
		} finally {
			await disconnect(connection);
		}
	},

	// A web client that stays logged in with stream management (XEP-0198) and is available; the
	// test then closes the tab, and the server hibernates the session instead of ending it.
	async connectEnableAndStay(service, jid, password) {
		const registration = await ready;
		// Each test starts a new session: no resumption state from an earlier test (strophe.js
		// would otherwise try to resume a session of a Prosody that is gone).
		const connection = await connect(service, jid, password, {
			enableStreamManagement: true,
			streamManagement: { storage: new MemoryStorageBackend() },
		});
		const deadline = Date.now() + 10000;
		while (!(connection.sm && connection.sm.enabled)) {
			if (Date.now() > deadline) {
				throw new Error("stream management was not enabled");
			}
			await new Promise((r) => setTimeout(r, 50));
		}
		connection.send($pres());
		const pushSubscription = await enableWebPush(connection, registration);
		window.liveConnection = connection;
		return { subscription: pushSubscription.toJSON(), resumable: connection.sm.state.resumeSupported };
	},

	// A client that turns notifications off: disable on the server, then unsubscribe.
	async connectAndDisable(service, jid, password) {
		const registration = await ready;
		const connection = await connect(service, jid, password);
		try {
			return await disableWebPush(connection, registration);
		} finally {
			await disconnect(connection);
		}
	},

	// The browser drops its subscription behind the server's back (the user revoked the
	// permission, or cleared the site's data).
	async unsubscribe() {
		const current = await subscription();
		return current ? current.unsubscribe() : false;
	},

	async currentEndpoint() {
		const current = await subscription();
		return current ? current.endpoint : null;
	},

	received() {
		return received.slice();
	},
};
window.dispatchEvent(new Event("web-push-test-ready"));
