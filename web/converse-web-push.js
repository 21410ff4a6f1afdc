/**
 * @description
 * converse-web-push: browser notifications of new messages while Converse is closed, through
 * Web Push and Prosody's mod_web_push (namespace urn:xmpp:webpush:0).
 *
 * Load it after converse.js and whitelist it:
 *
 *     <script src="/web_push/converse-web-push.js"></script>
 *     converse.initialize({ whitelisted_plugins: ['converse-web-push'], ... });
 *
 * After each login it asks the account's server (disco#info on the bare JID) for
 * urn:xmpp:webpush:0 and its VAPID public key, and does nothing at all when the server lacks
 * them. Otherwise Converse's Settings (the cog of the control box) get a switch, "Notify me of new
 * messages when Converse is closed". Turning it on asks the browser for permission (from that
 * click: browsers only ask from a user gesture), registers the service worker (sw.js, one
 * registration per account), subscribes with the server's key and sends <enable/>. The choice is
 * remembered per account in this browser; on later logins the plugin sends <enable/> again (it ties
 * the new session to the subscription, and brings back a subscription the server dropped), and
 * subscribes anew only when the server's key changed or the browser lost the subscription, then
 * sends <disable/> for the old endpoint. Turning it off sends <disable/> and drops the
 * subscription.
 *
 * Settings (api.settings.extend):
 *   web_push_service_worker       URL of the service worker ('/web_push/sw.js': mod_web_push serves it)
 *   web_push_scope                where the per-account registrations go (null: the worker's folder)
 *   web_push_ask_at_first_login   open Settings at the first login of an account in this browser,
 *                                 with a line that asks whether to turn notifications on (true)
 */
(function () {
    'use strict';

    const PLUGIN_NAME = 'converse-web-push';
    const NS_WEBPUSH = 'urn:xmpp:webpush:0';
    const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
    const NS_DATA = 'jabber:x:data';
    const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
    const KEY_FORM_TYPE = 'http://jabber.org/protocol/webpush#public-key';
    const KEY_FIELD = 'webpush#public-key';
    // Shared with sw.js: the page that subscribed and the server's key, per registration.
    const CACHE_NAME = 'converse-web-push';
    const CLIENT_ENTRY = 'client.json';
    // localStorage key prefix of the per-account choice: { enabled, endpoint, key }.
    const STORAGE_PREFIX = 'converse-web-push:';
    const MESSAGE_SUBSCRIPTION_CHANGED = 'converse-web-push:subscription-changed';

    function register(converse) {
        const { html, stx, Strophe, Model, log } = converse.env;
        const i18n = converse.env.i18n;
        const __ = (text) => (i18n?.__ ? i18n.__(text) : text);

        const browser_supported = () =>
            window.isSecureContext &&
            'serviceWorker' in navigator &&
            'PushManager' in window &&
            'Notification' in window;

        // --- small helpers ------------------------------------------------------------------

        function base64urlToBytes(text) {
            const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
            const padded = base64.padEnd(Math.ceil(base64.length / 4) * 4, '=');
            return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
        }

        function bytesToBase64url(buffer) {
            return btoa(String.fromCharCode(...new Uint8Array(buffer)))
                .replace(/\+/g, '-')
                .replace(/\//g, '_')
                .replace(/=+$/, '');
        }

        // The uncompressed P-256 point that PushManager.subscribe takes: 65 bytes, 0x04 first.
        function isServerKey(text) {
            if (!/^[A-Za-z0-9_-]+$/.test(text)) return false;
            try {
                const bytes = base64urlToBytes(text);
                return bytes.length === 65 && bytes[0] === 4;
            } catch (e) {
                return false;
            }
        }

        function readChoice(jid) {
            try {
                return JSON.parse(localStorage.getItem(STORAGE_PREFIX + jid)) || null;
            } catch (e) {
                return null;
            }
        }

        function writeChoice(jid, choice) {
            try {
                localStorage.setItem(STORAGE_PREFIX + jid, JSON.stringify(choice));
            } catch (e) {
                log.warn(`${PLUGIN_NAME}: cannot remember the choice for ${jid}: ${e}`);
            }
        }

        // The page the service worker opens on a click: this one, without Converse's #route.
        function pageUrl() {
            const url = new URL(window.location.href);
            url.hash = '';
            return url.href;
        }

        class StanzaError extends Error {
            constructor(condition, text) {
                super(`the server answered ${condition}${text ? `: ${text}` : ''}`);
                this.condition = condition;
            }
        }

        converse.plugins.add(PLUGIN_NAME, {
            // The Settings modal this plugin extends belongs to converse-profile.
            dependencies: ['converse-profile'],

            initialize() {
                const { _converse } = this;
                const { api } = _converse;

                api.settings.extend({
                    web_push_service_worker: '/web_push/sw.js',
                    web_push_scope: null,
                    web_push_ask_at_first_login: true,
                });

                // What the Settings switch shows. jid: the logged-in account; available: the server
                // offers Web Push and the browser has it; enabled: the switch is on; busy: a change is
                // under way; asking: first login, the line that asks is shown; problem: why it is off.
                const state = new Model({
                    jid: null,
                    server_key: null,
                    available: false,
                    enabled: false,
                    busy: false,
                    asking: false,
                    problem: null,
                });

                // One change at a time (a login's check and a click must not interleave).
                let queue = Promise.resolve();
                const serially = (task) => {
                    const run = queue.then(task);
                    queue = run.catch(() => {});
                    return run;
                };

                // --- XMPP -------------------------------------------------------------------

                function bareJid() {
                    const jid = api.user.jid();
                    return jid ? Strophe.getBareJidFromJid(jid) : null;
                }

                // The server's VAPID key from disco#info on the account's bare JID, or null. Asked
                // afresh on every login: the answer changes when the admin rotates the key.
                async function discoverKey(jid) {
                    let answer;
                    try {
                        answer = await api.disco.info(jid);
                    } catch (e) {
                        log.debug(`${PLUGIN_NAME}: disco#info on ${jid} failed`);
                        return null;
                    }
                    const query = answer?.getElementsByTagNameNS(NS_DISCO_INFO, 'query')[0];
                    if (!query) return null;
                    const features = Array.from(query.getElementsByTagNameNS(NS_DISCO_INFO, 'feature'));
                    if (!features.some((f) => f.getAttribute('var') === NS_WEBPUSH)) return null;
                    for (const form of query.getElementsByTagNameNS(NS_DATA, 'x')) {
                        const fields = Array.from(form.getElementsByTagNameNS(NS_DATA, 'field'));
                        const value = (name) =>
                            fields
                                .find((f) => f.getAttribute('var') === name)
                                ?.getElementsByTagNameNS(NS_DATA, 'value')[0]
                                ?.textContent.trim();
                        if (value('FORM_TYPE') === KEY_FORM_TYPE) {
                            const key = value(KEY_FIELD);
                            return key && isServerKey(key) ? key : null;
                        }
                    }
                    return null;
                }

                async function send(stanza) {
                    // reject=false: an error answer resolves too, so that its condition can be read.
                    const answer = await api.sendIQ(stanza, undefined, false);
                    if (!answer) {
                        throw new Error('the server did not answer');
                    }
                    if (answer.getAttribute('type') === 'error') {
                        const error = answer.getElementsByTagName('error')[0];
                        const children = error ? Array.from(error.children) : [];
                        const condition = children.find(
                            (c) => c.namespaceURI === NS_STANZAS && c.localName !== 'text'
                        );
                        const text = children.find((c) => c.namespaceURI === NS_STANZAS && c.localName === 'text');
                        throw new StanzaError(condition?.localName ?? 'error', text?.textContent);
                    }
                    return answer;
                }

                function sendEnable(subscription) {
                    const { endpoint, keys } = subscription.toJSON();
                    return send(stx`
                        <iq type="set" xmlns="jabber:client">
                            <enable xmlns="${NS_WEBPUSH}">
                                <endpoint>${endpoint}</endpoint>
                                <p256dh>${keys.p256dh}</p256dh>
                                <auth>${keys.auth}</auth>
                            </enable>
                        </iq>`);
                }

                // item-not-found: the server had forgotten it already (a push service's 410).
                async function sendDisable(endpoint) {
                    try {
                        await send(stx`
                            <iq type="set" xmlns="jabber:client">
                                <disable xmlns="${NS_WEBPUSH}"><endpoint>${endpoint}</endpoint></disable>
                            </iq>`);
                    } catch (e) {
                        if (e.condition !== 'item-not-found') throw e;
                    }
                }

                // --- the browser --------------------------------------------------------------

                function workerUrl() {
                    return new URL(api.settings.get('web_push_service_worker'), window.location.href).href;
                }

                // One registration, and so one push subscription, per account: accounts of different
                // servers need different keys, and turning one off must leave the others alone.
                function scopeFor(jid) {
                    const configured = api.settings.get('web_push_scope');
                    const base = new URL(configured || './', configured ? window.location.href : workerUrl());
                    if (!base.pathname.endsWith('/')) base.pathname += '/';
                    return new URL(`account/${encodeURIComponent(jid)}/`, base).href;
                }

                async function existingRegistration(jid) {
                    const scope = scopeFor(jid);
                    const registration = await navigator.serviceWorker.getRegistration(scope);
                    // getRegistration() may also answer with a wider one (the site's own worker).
                    return registration?.scope === scope ? registration : null;
                }

                // Registers (or updates) the account's worker and resolves once it is active:
                // subscribe() needs an active worker.
                async function activeRegistration(jid) {
                    const registration = await navigator.serviceWorker.register(workerUrl(), {
                        scope: scopeFor(jid),
                    });
                    if (registration.active) return registration;
                    const worker = registration.installing || registration.waiting;
                    await new Promise((resolve, reject) => {
                        const check = () => {
                            if (registration.active) resolve();
                            else if (worker.state === 'redundant') reject(new Error('the service worker failed to install'));
                        };
                        worker.addEventListener('statechange', check);
                        check();
                    });
                    return registration;
                }

                async function rememberPage(registration, key) {
                    try {
                        const cache = await caches.open(CACHE_NAME);
                        const body = JSON.stringify({ page: pageUrl(), key });
                        await cache.put(
                            new URL(CLIENT_ENTRY, registration.scope).href,
                            new Response(body, { headers: { 'Content-Type': 'application/json' } })
                        );
                    } catch (e) {
                        // Only a click on a notification would miss it (it then opens the site's root).
                        log.debug(`${PLUGIN_NAME}: cannot store the page for the service worker: ${e}`);
                    }
                }

                async function forgetPage(registration) {
                    try {
                        const cache = await caches.open(CACHE_NAME);
                        await cache.delete(new URL(CLIENT_ENTRY, registration.scope).href);
                    } catch (e) {
                        log.debug(`${PLUGIN_NAME}: cannot clear the page stored for the service worker: ${e}`);
                    }
                }

                function sameKey(buffer, key) {
                    return !!buffer && bytesToBase64url(buffer) === key;
                }

                function permissionProblem(permission) {
                    return permission === 'denied'
                        ? __('Notifications are blocked for this site in your browser’s settings.')
                        : __('Your browser did not allow notifications.');
                }

                // --- the steps ------------------------------------------------------------------

                // Subscribe if needed, then <enable/>; afterwards <disable/> for an endpoint of this
                // account that the server may still hold. Returns false when the permission is missing.
                async function subscribeAndEnable(jid, key) {
                    const choice = readChoice(jid) || {};
                    const registration = await activeRegistration(jid);
                    let subscription = await registration.pushManager.getSubscription();
                    const options_key = subscription?.options?.applicationServerKey;
                    if (subscription && !sameKey(options_key, key)) {
                        // The server's key changed (prosodyctl mod_web_push rotate): a subscription
                        // binds one key, so the browser needs a new one.
                        await subscription.unsubscribe();
                        subscription = null;
                    }
                    if (!subscription) {
                        if (Notification.permission !== 'granted') {
                            // Only a click may ask; this was a login, or the user said no.
                            if (choice.endpoint) await sendDisable(choice.endpoint);
                            writeChoice(jid, { enabled: false, endpoint: null, key: null });
                            state.set({ enabled: false, problem: permissionProblem(Notification.permission) });
                            return false;
                        }
                        subscription = await registration.pushManager.subscribe({
                            userVisibleOnly: true,
                            applicationServerKey: base64urlToBytes(key),
                        });
                    }
                    await rememberPage(registration, key);
                    await sendEnable(subscription);
                    writeChoice(jid, { enabled: true, endpoint: subscription.endpoint, key });
                    state.set({ enabled: true, problem: null });
                    // Should this not get through, the push service answers the server's next push
                    // there with 410 and the server forgets it all the same.
                    if (choice.endpoint && choice.endpoint !== subscription.endpoint) {
                        await sendDisable(choice.endpoint);
                    }
                    return true;
                }

                async function turnOff(jid) {
                    const choice = readChoice(jid) || {};
                    const registration = await existingRegistration(jid);
                    const subscription = await registration?.pushManager.getSubscription();
                    const endpoints = new Set([subscription?.endpoint, choice.endpoint].filter(Boolean));
                    for (const endpoint of endpoints) {
                        await sendDisable(endpoint);
                    }
                    await subscription?.unsubscribe();
                    if (registration) {
                        await forgetPage(registration);
                        await registration.unregister();
                    }
                    writeChoice(jid, { enabled: false, endpoint: null, key: null });
                    state.set({ enabled: false, problem: null });
                }

                // Runs a step for the logged-in account, with the switch busy from now until every
                // step asked for is done.
                let pending = 0;
                function change(step) {
                    const jid = state.get('jid');
                    const key = state.get('server_key');
                    if (!jid || !key) return Promise.resolve();
                    pending += 1;
                    state.set({ busy: true });
                    return serially(async () => {
                        try {
                            if (state.get('jid') !== jid) return;
                            await step(jid, key);
                        } catch (e) {
                            log.error(`${PLUGIN_NAME}: ${e}`);
                            state.set({
                                enabled: !!readChoice(jid)?.enabled,
                                problem: `${__('Could not change notifications:')} ${e.message || e}`,
                            });
                        } finally {
                            pending -= 1;
                            state.set({ busy: pending > 0 });
                        }
                    });
                }

                // The switch. Called in the click's own event handler: the permission request must
                // start right here, not after an await.
                function onSwitch(ev) {
                    const on = ev.target.checked;
                    state.set({ asking: false, problem: null });
                    if (!on) {
                        state.set({ enabled: false });
                        return change(turnOff);
                    }
                    state.set({ enabled: true });
                    const permission = Notification.requestPermission();
                    return change(async (jid, key) => {
                        const answer = await permission;
                        if (answer !== 'granted') {
                            writeChoice(jid, { ...(readChoice(jid) || {}), enabled: false });
                            state.set({ enabled: false, problem: permissionProblem(answer) });
                            return;
                        }
                        await subscribeAndEnable(jid, key);
                    });
                }

                async function onLogin() {
                    const jid = bareJid();
                    const choice = jid ? readChoice(jid) : null;
                    state.set({
                        jid,
                        server_key: null,
                        available: false,
                        enabled: !!choice?.enabled,
                        asking: false,
                        problem: null,
                    });
                    if (!jid || !browser_supported()) return;
                    const key = await discoverKey(jid);
                    if (!key || state.get('jid') !== jid) return;
                    state.set({ server_key: key, available: true });
                    if (choice?.enabled) {
                        await change(subscribeAndEnable);
                    } else if (
                        !choice &&
                        api.settings.get('web_push_ask_at_first_login') &&
                        Notification.permission !== 'denied'
                    ) {
                        // Asked once per account in this browser: a dismissed question stays off.
                        writeChoice(jid, { enabled: false, endpoint: null, key: null });
                        state.set({ asking: true });
                        api.modal.show('converse-user-settings-modal');
                    }
                }

                const login = () => onLogin().catch((e) => log.error(`${PLUGIN_NAME}: ${e}`));
                api.listen.on('connected', login);
                api.listen.on('reconnected', login);
                api.listen.on('logout', () => state.set({ jid: null, available: false, asking: false }));

                if (browser_supported()) {
                    // The worker subscribed anew (pushsubscriptionchange): tell the server now.
                    navigator.serviceWorker.addEventListener('message', (ev) => {
                        if (ev.data?.type !== MESSAGE_SUBSCRIPTION_CHANGED || !state.get('enabled')) return;
                        const jid = state.get('jid');
                        if (jid && ev.data.scope === scopeFor(jid)) change(subscribeAndEnable);
                    });
                    navigator.serviceWorker.startMessages();
                }

                // --- the control, in Converse's Settings modal ----------------------------------

                const tplWebPush = () => {
                    if (!state.get('available')) return '';
                    const enabled = state.get('enabled');
                    const busy = state.get('busy');
                    const problem = state.get('problem');
                    const blocked = Notification.permission === 'denied';
                    const i18n_label = __('Notify me of new messages when Converse is closed');
                    const i18n_ask = __(
                        'Would you like a notification from this browser when a message arrives while Converse is closed?'
                    );
                    const i18n_on = __('This browser shows a notification when a message arrives while Converse is closed.');
                    const i18n_off = __('Your server can notify this browser of new messages while Converse is closed.');
                    const help = problem || (enabled ? i18n_on : i18n_off);
                    return html`<div class="converse-web-push mb-3">
                        ${state.get('asking') ? html`<p class="converse-web-push__question alert alert-info">${i18n_ask}</p>` : ''}
                        <div class="form-check form-switch">
                            <input
                                class="form-check-input"
                                type="checkbox"
                                role="switch"
                                id="converse-web-push-switch"
                                .checked=${enabled}
                                ?disabled=${busy || (blocked && !enabled)}
                                @change=${onSwitch}
                            />
                            <label class="form-check-label" for="converse-web-push-switch">${i18n_label}</label>
                        </div>
                        <small
                            class="form-text ${problem ? 'text-danger' : 'text-muted'} converse-web-push__status"
                            data-state="${busy ? 'busy' : enabled ? 'on' : 'off'}"
                            >${help}</small
                        >
                    </div>`;
                };

                const SettingsModal = api.elements.registry['converse-user-settings-modal'];
                if (!SettingsModal) {
                    log.warn(`${PLUGIN_NAME}: Converse has no settings modal; the plugin offers no control`);
                    return;
                }
                class SettingsWithWebPush extends SettingsModal {
                    initialize() {
                        super.initialize();
                        this.listenTo(state, 'change', () => this.requestUpdate());
                    }

                    renderModal() {
                        return html`${tplWebPush()}${super.renderModal()}`;
                    }
                }
                api.elements.define('converse-user-settings-modal', SettingsWithWebPush);
            },
        });
    }

    if (window.converse?.plugins) {
        register(window.converse);
    } else {
        window.addEventListener('converse-loaded', (ev) => register(ev.detail.converse), { once: true });
    }
})();
