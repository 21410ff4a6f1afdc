// Subscribing an XMPP web client to mod_web_push, with strophe.js (npm package "strophe.js").
//
//   import { registerServiceWorker, enableWebPush, disableWebPush } from "./subscribe.js";
//
//   const registration = await registerServiceWorker("/service-worker.js");
//   // once connected (Strophe.Status.CONNECTED), ideally from a click handler:
//   await enableWebPush(connection, registration);
//   // when the user turns notifications off, or logs out for good:
//   await disableWebPush(connection, registration);
//
// enableWebPush is safe to call on every connect: it reuses the browser's subscription when the
// server's key has not changed, and the server replaces the keys of an endpoint it already has.
// The browser asks the user for notification permission during subscribe(); Firefox and Safari
// ask only from a user gesture (a click), so call it from one the first time.

import { Strophe, $iq } from "strophe.js";

export const NS_WEBPUSH = "urn:xmpp:webpush:0";
const FORM_TYPE = "http://jabber.org/protocol/webpush#public-key";
const NS_DATA = "jabber:x:data";

// The page must be served over https (or from http://localhost while developing): service
// workers and the Push API exist only in secure contexts.
export async function registerServiceWorker(url = "/service-worker.js") {
	if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
		throw new Error("this browser has no Push API");
	}
	await navigator.serviceWorker.register(url);
	// The registration whose worker is active: subscribe() needs an active worker.
	return navigator.serviceWorker.ready;
}

// The server's VAPID public key, from disco#info on our own bare JID; null when the server has
// no mod_web_push.
export async function discoverPushKey(connection) {
	const query = $iq({ type: "get", to: Strophe.getBareJidFromJid(connection.jid) })
		.c("query", { xmlns: Strophe.NS.DISCO_INFO });
	const answer = await sendIQ(connection, query);
	const info = answer.getElementsByTagNameNS(Strophe.NS.DISCO_INFO, "query")[0];
	const features = Array.from(info ? info.getElementsByTagNameNS(Strophe.NS.DISCO_INFO, "feature") : []);
	if (!features.some((feature) => feature.getAttribute("var") === NS_WEBPUSH)) {
		return null;
	}
	for (const form of info.getElementsByTagNameNS(NS_DATA, "x")) {
		const fields = {};
		for (const field of form.getElementsByTagNameNS(NS_DATA, "field")) {
			const value = field.getElementsByTagNameNS(NS_DATA, "value")[0];
			fields[field.getAttribute("var")] = value ? value.textContent.trim() : "";
		}
		if (fields.FORM_TYPE === FORM_TYPE && fields["webpush#public-key"]) {
			return fields["webpush#public-key"];
		}
	}
	return null;
}

// The browser's push subscription for this server key: the existing one if it was made for the
// same key, otherwise a new one. A subscription is bound to one applicationServerKey, so after
// the server's key changed (prosodyctl mod_web_push rotate) the old one must go.
export async function browserSubscription(registration, serverKey) {
	const key = base64urlToBytes(serverKey);
	const existing = await registration.pushManager.getSubscription();
	if (existing) {
		const existingKey = existing.options.applicationServerKey;
		if (existingKey && sameBytes(new Uint8Array(existingKey), key)) {
			return existing;
		}
		await existing.unsubscribe();
	}
	// userVisibleOnly: every push shows a notification (Chrome and Safari accept nothing else).
	return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
}

// The <enable/> request for a browser subscription.
export function enableRequest(subscription) {
	// toJSON() gives the keys in base64url, as the server wants them.
	const { endpoint, keys } = subscription.toJSON();
	return $iq({ type: "set" })
		.c("enable", { xmlns: NS_WEBPUSH })
		.c("endpoint").t(endpoint).up()
		.c("p256dh").t(keys.p256dh).up()
		.c("auth").t(keys.auth);
}

// Discover, subscribe, enable. Returns the PushSubscription; throws if the server has no
// mod_web_push, the user refused permission, or the server refused the subscription.
export async function enableWebPush(connection, registration) {
	const serverKey = await discoverPushKey(connection);
	if (!serverKey) {
		throw new Error("this server does not offer Web Push (urn:xmpp:webpush:0)");
	}
	const subscription = await browserSubscription(registration, serverKey);
	await sendIQ(connection, enableRequest(subscription));
	return subscription;
}

// Tell the server to stop pushing to this browser, then drop the browser's subscription.
export async function disableWebPush(connection, registration) {
	const subscription = await registration.pushManager.getSubscription();
	if (!subscription) {
		return false;
	}
	const request = $iq({ type: "set" })
		.c("disable", { xmlns: NS_WEBPUSH })
		.c("endpoint").t(subscription.endpoint);
	try {
		await sendIQ(connection, request);
	} catch (error) {
		// item-not-found: the server had already forgotten it (e.g. after the push service
		// answered 410); the browser's copy must go all the same.
		if (error.condition !== "item-not-found") {
			throw error;
		}
	}
	await subscription.unsubscribe();
	return true;
}

// strophe.js's sendIQ as a promise; an error answer rejects with its stanza error condition.
export function sendIQ(connection, request, timeout = 15000) {
	return new Promise((resolve, reject) => {
		connection.sendIQ(request, resolve, (answer) => {
			if (!answer) {
				reject(new Error("no answer from the server"));
				return;
			}
			const error = answer.getElementsByTagName("error")[0];
			const condition = error && Array.from(error.children)
				.find((child) => child.namespaceURI === Strophe.NS.STANZAS && child.localName !== "text");
			const text = error && error.getElementsByTagNameNS(Strophe.NS.STANZAS, "text")[0];
			const failure = new Error(`server answered ${condition ? condition.localName : "error"}` +
				(text ? `: ${text.textContent}` : ""));
			failure.condition = condition ? condition.localName : null;
			reject(failure);
		}, timeout);
	});
}

function base64urlToBytes(text) {
	const base64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
	return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
	return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
