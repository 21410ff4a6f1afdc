// The service worker of converse-web-push: shows one notification for each push that mod_web_push
// sends (https://…/web_push/sw.js, served by the module).
//
// The browser wakes this worker for every push, also while no tab of the web client is open, and
// hands it the decrypted JSON of DESIGN.md's "The notification":
//
//   { "account": "juliet@capulet.lit", "important": true, "message-count": 1,
//     "last-message-sender": "romeo@montague.lit/orchard", "last-message-body": "New Message!",
//     "tag": "…",                                        (one per conversation, when the server sends it)
//     "web_push": 8030, "notification": { "title": "…", "body": "…", "navigate": "https://…", "tag": "…" },
//     "app_badge": 3, "mutable": true }                  (declarative Web Push, when the admin set
//                                                         web_push_client_url)
//
// Every member may be missing; whatever arrives, the worker shows a notification, as browsers
// demand of a subscription made with userVisibleOnly (Chrome shows a notice of its own for a push
// that shows nothing; Safari revokes the subscription after a few).
//
// The plugin registers this worker once per account, with a scope of its own (…/account/<jid>/), and
// stores beside it, in the Cache storage "converse-web-push", the page that subscribed and the
// server's key (see CLIENT_ENTRY); a click on a notification goes back to that page.

'use strict';

const CACHE = 'converse-web-push';
// The entry of this registration in CACHE: { "page": URL of the page that subscribed, "key": the
// server's public key (base64url) the subscription was made with }.
const CLIENT_ENTRY = 'client.json';
const DEFAULT_BODY = 'New message';

self.addEventListener('install', () => {
    // A new version of this file (the admin upgraded the module) takes over at once: it keeps no
    // state of its own that an older version could still be using.
    self.skipWaiting();
});

self.addEventListener('push', (event) => {
    // waitUntil keeps the worker alive until the notification is up.
    event.waitUntil(onPush(event));
});

self.addEventListener('notificationclick', (event) => {
    event.notification.close();
    event.waitUntil(onClick(event.notification));
});

self.addEventListener('pushsubscriptionchange', (event) => {
    event.waitUntil(onSubscriptionChange(event));
});

function text(value) {
    return typeof value === 'string' && value !== '' ? value : null;
}

function bareJid(address) {
    const slash = address.indexOf('/');
    return slash === -1 ? address : address.slice(0, slash);
}

// An http(s) URL, or null.
function webUrl(value) {
    if (!text(value)) {
        return null;
    }
    try {
        const url = new URL(value, self.location.href);
        return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch (error) {
        return null;
    }
}

function readPayload(data) {
    if (!data) {
        return {};
    }
    try {
        const payload = data.json();
        return payload && typeof payload === 'object' && !Array.isArray(payload) ? payload : {};
    } catch (error) {
        // Not JSON: not from mod_web_push, yet it must show something all the same.
        return {};
    }
}

// What a push shows: DESIGN.md's rules (title: the sender's bare JID, else the account; body: the
// message body, else "New message"; tag: the payload's, else the account), with the declarative
// member as a fallback for what the top level lacks.
function notificationFor(payload) {
    const declarative = payload.notification && typeof payload.notification === 'object' ? payload.notification : {};
    const account = text(payload.account);
    const sender = text(payload['last-message-sender']);
    const title = (sender && bareJid(sender)) || account || text(declarative.title) || DEFAULT_BODY;
    const body = text(payload['last-message-body']) || text(declarative.body) || DEFAULT_BODY;
    const tag = text(payload.tag) || text(declarative.tag) || account || 'converse-web-push';
    const options = {
        body,
        tag,
        // A newer push of the same conversation replaces the notification and alerts again.
        renotify: true,
        data: { account, navigate: webUrl(declarative.navigate) },
    };
    if (text(declarative.lang)) {
        options.lang = declarative.lang;
    }
    return { title, options };
}

async function onPush(event) {
    const payload = readPayload(event.data);
    const { title, options } = notificationFor(payload);
    if (Number.isInteger(payload.app_badge) && payload.app_badge >= 0 && self.navigator.setAppBadge) {
        self.navigator.setAppBadge(payload.app_badge).catch(() => {});
    }
    try {
        await self.registration.showNotification(title, options);
    } catch (error) {
        // The permission was withdrawn; nothing else can be shown.
        console.warn('converse-web-push: cannot show the notification:', error);
    }
}

async function clientEntry() {
    try {
        const cache = await self.caches.open(CACHE);
        const response = await cache.match(new URL(CLIENT_ENTRY, self.registration.scope).href);
        return response ? await response.json() : {};
    } catch (error) {
        return {};
    }
}

function withoutHash(url) {
    const parsed = new URL(url);
    parsed.hash = '';
    return parsed.href;
}

// Focus a tab of the web client if one is open; else open the notification's navigate URL, else
// the page that subscribed, else the site's root.
async function onClick(notification) {
    const data = notification.data || {};
    const entry = await clientEntry();
    const page = webUrl(entry.page);
    const targets = [data.navigate, page].filter(Boolean).map(withoutHash);
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = windows.find((client) => targets.includes(withoutHash(client.url)));
    if (open && 'focus' in open) {
        return open.focus();
    }
    return self.clients.openWindow(data.navigate || page || new URL('/', self.location.href).href);
}

function keyBytes(base64url) {
    const base64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
    return Uint8Array.from(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
}

// The push service replaced or dropped the subscription. Subscribe again with the same server key
// (no permission prompt: the permission is already there); the server learns the new endpoint when
// the web client next connects (the plugin then enables it and disables the old one), and open tabs
// are told now so that a connected one does it at once.
async function onSubscriptionChange(event) {
    let subscription = event.newSubscription || await self.registration.pushManager.getSubscription();
    if (!subscription) {
        let key = event.oldSubscription?.options?.applicationServerKey;
        if (!key) {
            const stored = text((await clientEntry()).key);
            key = stored && keyBytes(stored);
        }
        if (key) {
            try {
                subscription = await self.registration.pushManager.subscribe({
                    userVisibleOnly: true, applicationServerKey: key,
                });
            } catch (error) {
                console.warn('converse-web-push: cannot subscribe again:', error);
            }
        }
    }
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
        client.postMessage({ type: 'converse-web-push:subscription-changed', scope: self.registration.scope });
    }
}
