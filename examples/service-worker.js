// Service worker of an XMPP web client that receives mod_web_push notifications.
//
// Serve it from the root of your site (e.g. /service-worker.js) so that its scope covers the
// page that subscribes. The browser wakes it for every push, even when no tab of the client is
// open; the server sends only encrypted JSON, which the browser has already decrypted here:
//
//   { "account": "juliet@capulet.lit", "important": true, "message-count": 1,
//     "last-message-sender": "romeo@montague.lit/orchard", "last-message-body": "New Message!" }
//
// "last-message-sender" and "last-message-body" are there only when the server's admin enabled
// them (push_notification_with_sender, push_notification_with_body / _important_body).

self.addEventListener("push", (event) => {
	// waitUntil keeps the worker alive until the notification is shown; a push that shows
	// nothing makes browsers show a generic notice of their own, or revoke the subscription.
	event.waitUntil(onPush(event));
});

async function onPush(event) {
	let notification;
	try {
		notification = event.data.json();
	} catch (error) {
		// Not JSON (or no payload): nothing from mod_web_push. Still show something, as the
		// browser demands for every push (userVisibleOnly).
		notification = {};
	}

	// Tell the open tabs of the client (even those this worker does not control yet), so that
	// one of them can update its unread counter or reconnect.
	const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
	for (const client of windows) {
		client.postMessage({ type: "web-push", notification });
	}

	// DESIGN.md: the sender's bare JID when the server sends it, else the account; the body, else
	// a generic line.
	const sender = notification["last-message-sender"];
	const title = sender ? sender.split("/")[0] : notification.account || "New message";
	const options = {
		body: notification["last-message-body"] || "New message",
		// One notification per conversation (the server's tag), else per account: a newer push
		// replaces the older one instead of stacking.
		tag: notification.tag || notification.account || "xmpp",
		renotify: true,
		data: { account: notification.account },
	};
	try {
		await self.registration.showNotification(title, options);
	} catch (error) {
		// Permission revoked, or a browser that cannot show notifications (headless Firefox
		// fails here with NS_ERROR_FAILURE). The tabs have already been told above.
		console.warn("cannot show the notification:", error);
	}
}

self.addEventListener("notificationclick", (event) => {
	event.notification.close();
	// Bring the client to the front, or open it if no tab is left.
	event.waitUntil((async () => {
		const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
		for (const client of windows) {
			if ("focus" in client) {
				return client.focus();
			}
		}
		return self.clients.openWindow(self.registration.scope);
	})());
});

self.addEventListener("pushsubscriptionchange", (event) => {
	// The browser replaced or dropped the subscription; the server's copy is now stale (the push
	// service answers it 404/410 and the server forgets it). A worker has no XMPP connection,
	// so ask the open tabs to subscribe and enable again; a client that starts later should do the
	// same on connect (enableWebPush in subscribe.js is safe to call every time).
	event.waitUntil((async () => {
		const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
		for (const client of windows) {
			client.postMessage({ type: "web-push-resubscribe" });
		}
	})());
});
