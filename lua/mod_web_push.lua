-- mod_web_push: Web Push notifications (RFC 8030, RFC 8291, RFC 8292) for XMPP web clients.
--
-- The protocol (urn:xmpp:webpush:0), the notification JSON, the HTTP headers and the options of
-- DESIGN.md are the contract. The cryptography and HTTP run on the native library's worker
-- threads (web_push.so beside this file); this module only validates, decides when to push,
-- builds the payload and hands a job over, and later collects the result.
--
-- Options beyond DESIGN.md (for the README):
--
--   web_push_min_interval = 2
--       Seconds between two pushes to the same subscription. Stanzas arriving in between are
--       coalesced into one follow-up push (its message-count says how many); the Topic header
--       lets the push service replace an undelivered older one.
--   web_push_max_pushes_per_minute = 30
--       Pushes per account per minute, over all its subscriptions (a token bucket that holds
--       this many). Beyond it, pushes are coalesced the same way until the bucket refills.
--       0 turns the account limit off.
--
-- Retries (the native library's "retry": 429, 5xx, WNS's 406; and network errors) wait at least
-- Retry-After, else an exponential backoff from 1 s doubling up to 10 minutes with jitter, at most
-- 10 attempts, and never past the notification's TTL (each retry carries the TTL that is left).
--
-- Only message stanzas cause pushes (presences and IQs in a smacks queue never do). With
-- push_notification_with_body, an important stanza without a body (an OMEMO message without
-- fallback text, a call) still carries push_notification_important_body.
--
-- Events for other modules: web_push/registration (before a subscription is stored; true vetoes
-- it with not-allowed), web_push/push (before a push is sent; true vetoes, event.payload may be
-- amended), web_push/unregistered (after a subscription was forgotten; event.reason is
-- "disabled", "gone", "errors" or "device-cap").

local st = require "util.stanza";
local jid = require "util.jid";
local cache = require "util.cache";
local hashes = require "util.hashes";
local json = require "util.json";
local time = require "util.time";

local xmlns_push = "urn:xmpp:webpush:0";
local xmlns_sid = "urn:xmpp:sid:0";
local xmlns_carbons = "urn:xmpp:carbons:2";
local xmlns_forward = "urn:xmpp:forward:0";
local xmlns_jmi = "urn:xmpp:jingle-message:0";
local key_form_type = "http://jabber.org/protocol/webpush#public-key";

local host = module.host;
local now = time.monotonic or time.now;

-- The notification JSON stays within this many bytes (DESIGN.md: Firefox for Android relays
-- through a ~3 KB path).
local MAX_JSON = 3000;
local ELLIPSIS = "\226\128\166"; -- U+2026
-- Longest text accepted in an <enable/> child before looking closer (base64url of 65 and 16
-- bytes is 87 and 22 characters; endpoints are at most 2048 bytes).
local MAX_TEXT = { endpoint = 2048, p256dh = 200, auth = 100 };
local RETRY_BASE, RETRY_CAP, RETRY_ATTEMPTS = 1, 600, 10;
-- smacks-ack-delayed: stanzas of one burst to a silent session make one push after this delay.
local BATCH_DELAY = 1;
local USER_CACHE_SIZE = 10000;

local function option_number(name, default, min, max)
	local value = module:get_option_number(name, default) or default;
	if min and value < min then value = min; end
	if max and value > max then value = max; end
	return value;
end

-- Options are read once, at load.
local max_devices = math.floor(option_number("push_max_devices", 5, 1));
local max_errors = math.floor(option_number("push_max_errors", 16, 1));
local dummy_body = module:get_option_string("push_notification_important_body", "New Message!");
if dummy_body == "" then dummy_body = nil; end
local with_body = module:get_option_boolean("push_notification_with_body", false);
local with_sender = module:get_option_boolean("push_notification_with_sender", false);
local max_hibernation = option_number("push_max_hibernation_timeout", 72 * 3600, 0);
local ttl = math.floor(option_number("web_push_ttl", 86400, 0, 30 * 86400));
local important_only = module:get_option_boolean("web_push_important_only", true) ~= false;
local allow_insecure = module:get_option_boolean("web_push_allow_insecure_endpoints", false) == true;
local min_interval = option_number("web_push_min_interval", 2, 0);
local per_minute = option_number("web_push_max_pushes_per_minute", 30, 0);
local endpoint_hosts;
do
	local hosts = module:get_option_array("web_push_endpoint_hosts", nil);
	if hosts then
		endpoint_hosts = {};
		for i, name in ipairs(hosts) do endpoint_hosts[i] = tostring(name); end
	end
end
local policy = { allow_insecure = allow_insecure, hosts = endpoint_hosts };

local native; -- the native library (web_push.so), loaded on demand

local function load_native()
	if native then return native; end
	local path = module:get_directory() .. "/web_push.so";
	local open, err = package.loadlib(path, "luaopen_web_push");
	if not open then
		return nil, "cannot load " .. path .. ": " .. tostring(err);
	end
	local ok, lib = pcall(open);
	if not ok then
		return nil, "cannot open " .. path .. ": " .. tostring(lib);
	end
	native = lib;
	return lib;
end

local function key_store_for(context)
	return context:open_store("web_push_vapid");
end

-- A short name for a subscription in log lines: the push service's origin and a hash of the
-- endpoint (whose path is a capability and stays out of logs).
local labels = cache.new(1000);
local function label(endpoint)
	local name = labels:get(endpoint);
	if not name then
		local origin = endpoint:match("^(%a[%w+.-]*://[^/?#]+)") or "?";
		name = origin .. "#" .. hashes.sha256(endpoint, true):sub(1, 8);
		labels:set(endpoint, name);
	end
	return name;
end

-- Endpoint policy, as at enable time. nil when acceptable, else the stanza error condition and
-- a text that names the endpoint.
local function check_endpoint(endpoint)
	local ok, condition, text = native.check_endpoint(endpoint, policy);
	if ok then return nil; end
	text = tostring(text or condition);
	if not text:find("endpoint", 1, true) then text = "endpoint: " .. text; end
	return condition == "not-acceptable" and "not-acceptable" or "bad-request", text;
end

--------------------------------------------------------------------------------------------------
-- prosodyctl mod_web_push key|import|rotate <host>

local usage = [[
Usage: prosodyctl mod_web_push [key] <host>            print the host's VAPID public key
       prosodyctl mod_web_push import <host> <pem-file>  use an existing key (PKCS#8 or SEC1 PEM)
       prosodyctl mod_web_push rotate <host>           make a new key pair]];

function module.command(arg)
	local action, target, file = arg[1], arg[2], arg[3];
	if action and not target and prosody.hosts[action] then
		action, target = "key", action; -- prosodyctl mod_web_push <host>
	end
	if not (action == "key" or action == "import" or action == "rotate") or not target
	or (action == "import" and not file) then
		print(usage);
		return 1;
	end
	if not (prosody.hosts[target] and prosody.hosts[target].type == "local") then
		print("Error: " .. target .. " is not a VirtualHost in Prosody's configuration");
		return 1;
	end
	local lib, err = load_native();
	if not lib then
		print("Error: " .. err);
		return 1;
	end
	require "core.storagemanager".initialize_host(target);
	local store = key_store_for(module:context(target));
	if action == "key" then
		local stored, read_err = store:get(nil);
		if not stored and read_err then
			print("Error: cannot read the key: " .. tostring(read_err));
			return 1;
		elseif not (stored and stored.private) then
			print("No key yet: Prosody makes one when it first loads the module on " .. target .. ".");
			return 1;
		end
		local public, key_err = lib.public_key(stored.private);
		if not public then
			print("Error: the stored key is unusable (" .. key_err .. "); import or rotate it.");
			return 1;
		end
		print(public);
		return 0;
	end
	local private, public;
	if action == "import" then
		local f, open_err = io.open(file, "r");
		if not f then
			print("Error: " .. tostring(open_err));
			return 1;
		end
		local text = f:read("a");
		f:close();
		private, public = lib.import_private_key(text or "");
		if not private then
			print("Error: " .. public);
			return 1;
		end
	else
		private, public = lib.generate_keypair();
	end
	local ok, write_err = store:set(nil, { private = private, created = os.time() });
	if not ok then
		print("Error: cannot store the key: " .. tostring(write_err));
		return 1;
	end
	print(public);
	print("Warning: every browser subscription made for the previous key stops working; clients must");
	print("subscribe again. Restart Prosody (or reload mod_web_push on " .. target .. ") to use the new key.");
	return 0;
end

if host == "*" or prosody.process_type == "prosodyctl" then
	-- Loaded by prosodyctl for module.command only.
	return;
end
if module:get_host_type() ~= "local" then
	error("mod_web_push belongs on a VirtualHost, not on " .. host);
end

--------------------------------------------------------------------------------------------------
-- Start: native library, the host's key, the sender. Everything that can fail comes before any
-- hook is added, so a failed load leaves nothing behind.

assert(load_native());

local private_key, public_key;
do
	local store = key_store_for(module);
	local stored, err = store:get(nil);
	if not stored and err then
		error("cannot read the VAPID key from storage: " .. tostring(err));
	end
	if stored and stored.private then
		private_key, public_key = native.import_private_key(stored.private);
		if not private_key then
			error("the stored VAPID key is unusable (" .. tostring(public_key) .. "); "
				.. "run prosodyctl mod_web_push import or rotate for " .. host);
		end
	else
		private_key, public_key = native.generate_keypair();
		local ok, write_err = store:set(nil, { private = private_key, created = os.time() });
		if not ok then
			error("cannot store the new VAPID key: " .. tostring(write_err));
		end
		module:log("info", "Made the VAPID key pair of %s", host);
	end
end

-- The VAPID subject: configured, or the first admin mailto: address of contact_info that push
-- services take, or https://<host>.
local valid_subject = native.check_subject;
local subject = module:get_option_string("web_push_vapid_subject");
if subject then
	local ok, err = valid_subject(subject);
	if not ok then error("web_push_vapid_subject: " .. tostring(err)); end
else
	local contact = module:get_option("contact_info");
	local admins = type(contact) == "table" and contact.admin;
	if type(admins) == "string" then admins = { admins }; end
	if type(admins) == "table" then
		for _, address in ipairs(admins) do
			if type(address) == "string" and address:match("^mailto:") and valid_subject(address) then
				subject = address;
				break;
			end
		end
	end
	if not subject then
		subject = "https://" .. host;
		module:log("warn", "web_push_vapid_subject is not set and contact_info has no admin mailto: address "
			.. "push services take; using %s (set web_push_vapid_subject)", subject);
	end
end

local sender = assert(native.new_sender({
	private_key = private_key;
	subject = subject;
	workers = math.floor(option_number("web_push_workers", 2, 1, 64));
	queue_size = math.floor(option_number("web_push_queue_size", 1000, 1));
	timeout = option_number("web_push_timeout", 10, 0.1, 600);
	allow_insecure = allow_insecure;
	hosts = endpoint_hosts;
}));

-- Topic (RFC 8030): one per account, so a device that comes back gets the latest notification
-- only. A keyed hash, so the push service cannot tell which account it is.
local topic_secret = hashes.sha256("mod_web_push topic\0" .. private_key, false);
local topics = cache.new(1000);
local function topic_for(account)
	local topic = topics:get(account);
	if not topic then
		topic = hashes.hmac_sha256(topic_secret, account, true):sub(1, 32);
		topics:set(account, topic);
	end
	return topic;
end

-- Metrics (mod_http_openmetrics shows them).
local count_sent = module:measure("pushes_sent", "counter");
local count_delivered = module:measure("pushes_delivered", "counter");
local count_gone = module:measure("pushes_gone", "counter");
local count_failed = module:measure("pushes_failed", "counter");
local count_retried = module:measure("pushes_retried", "counter");
local latency = module:measure("push_latency", "times", {
	buckets = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };
});

local host_sessions = prosody.hosts[host].sessions;
local host_events = prosody.hosts[host].events;
local sub_store = module:open_store("web_push");

--------------------------------------------------------------------------------------------------
-- Timers: every one goes through here, so unload can stop them all, and an error in one is
-- logged, never thrown into Prosody's timer loop.

local timers = {};

local function after(delay, callback)
	local timer;
	timer = module:add_timer(delay, function ()
		timers[timer] = nil;
		local ok, err = pcall(callback);
		if not ok then
			module:log("error", "Timer failed: %s", err);
		end
	end);
	timers[timer] = true;
	return timer;
end

local function cancel(timer)
	if timer then
		timers[timer] = nil;
		timer:stop();
	end
end

--------------------------------------------------------------------------------------------------
-- Subscriptions in storage: one keyval record per account,
-- { [endpoint] = { p256dh = , auth = , enabled_at = , errors = } },
-- cached per account so a push never reads storage.

local users = cache.new(USER_CACHE_SIZE);

local function usable_record(record)
	return type(record) == "table" and type(record.p256dh) == "string" and type(record.auth) == "string";
end

-- A cache entry: the stored subscriptions, and those not to be contacted (no longer allowed by
-- the configuration, or a damaged record). They stay stored in case the configuration returns.
local function make_entry(user, subs)
	local blocked;
	for endpoint, record in pairs(subs) do
		local refused = not (type(endpoint) == "string" and usable_record(record));
		if not refused then
			refused = check_endpoint(endpoint) ~= nil;
		end
		if refused then
			blocked = blocked or {};
			blocked[endpoint] = true;
			module:log("debug", "Not contacting subscription %s of %s: not allowed by the configuration",
				type(endpoint) == "string" and label(endpoint) or "?", user);
		end
	end
	return { subs = subs, blocked = blocked, keys = {} };
end

local function load_user(user)
	local entry = users:get(user);
	if entry then return entry; end
	local subs, err = sub_store:get(user);
	if subs == nil and err ~= nil then
		module:log("error", "Cannot read the push subscriptions of %s: %s", user, err);
		return nil, err;
	end
	if type(subs) ~= "table" then subs = {}; end
	entry = make_entry(user, subs);
	users:set(user, entry);
	return entry;
end

local function usable(entry, endpoint)
	return entry.subs[endpoint] ~= nil and not (entry.blocked and entry.blocked[endpoint]);
end

-- A subscription's key for the tables below.
local function subscription_key(user, endpoint)
	return user .. "\0" .. endpoint;
end

-- The same, made once per cache entry: every string made per push is garbage that Prosody's
-- eager collector pays for.
local function subkey(entry, user, endpoint)
	local key = entry.keys[endpoint];
	if not key then
		key = subscription_key(user, endpoint);
		entry.keys[endpoint] = key;
	end
	return key;
end

local function sessions_of(user)
	local account = host_sessions[user];
	return account and account.sessions or {};
end

--------------------------------------------------------------------------------------------------
-- Smacks hibernation, extended for push-enabled sessions up to push_max_hibernation_timeout until
-- the first important push, as mod_cloud_notify does. mod_smacks of 13 checks that the watchdog
-- calling back is the session's current one, so there the watchdog keeps its identity and only
-- gets a longer timeout; 0.12's watchdog cannot change its timeout, so there it is replaced by one
-- that calls the original callback. Fields of our own only: mod_cloud_notify may work on the
-- same session.

local function extend_hibernation(session, s)
	local dog = session.hibernating_watchdog;
	if s.extended or not dog or max_hibernation <= 0 then return; end
	local original = tonumber(dog.timeout);
	if not original or original >= max_hibernation then return; end
	if dog.timer_id ~= nil then -- util.watchdog of 13: reset(new_timeout)
		s.extended = { dog = dog, timeout = original };
		dog:reset(max_hibernation);
	elseif dog.last_reset ~= nil then -- util.watchdog of 0.12
		local callback = dog.callback;
		local watchdog = require "util.watchdog";
		dog:cancel();
		local longer = watchdog.new(max_hibernation, function (this)
			return callback(this);
		end);
		session.hibernating_watchdog = longer;
		s.extended = { dog = longer, timeout = original, callback = callback };
	else
		return;
	end
	session.log("debug", "Hibernation extended to %ds for push notifications", max_hibernation);
end

-- Back to mod_smacks' own timeout, counted from now. Leaves a watchdog alone that someone else
-- (mod_smacks resuming, mod_cloud_notify) has replaced in between.
local function restore_hibernation(session, s)
	local e = s.extended;
	if not e then return; end
	s.extended = nil;
	if session.hibernating_watchdog ~= e.dog then return; end
	if e.callback then
		local watchdog = require "util.watchdog";
		e.dog:cancel();
		session.hibernating_watchdog = watchdog.new(e.timeout, e.callback);
	else
		e.dog:reset(e.timeout);
	end
end

-- Ends what a session holds for push: the batch timer and the hibernation extension.
local function release_session(session, s)
	cancel(s.batch_timer);
	s.batch_timer, s.batch = nil, nil;
	restore_hibernation(session, s);
end

-- The session tied to a subscription (the newest that enabled it) no longer is.
local function detach(user, endpoint)
	for _, session in pairs(sessions_of(user)) do
		local s = session.web_push;
		if s and s.endpoints[endpoint] then
			s.endpoints[endpoint] = nil;
			if next(s.endpoints) == nil then
				release_session(session, s);
				session.web_push = nil;
			end
		end
	end
end

local function attach(session, endpoint)
	detach(session.username, endpoint);
	local s = session.web_push;
	if not s then
		s = { endpoints = {} };
		session.web_push = s;
	end
	s.endpoints[endpoint] = true;
end

--------------------------------------------------------------------------------------------------
-- Pushes in progress, per subscription ("user\0endpoint"): the job in flight (sent, or waiting
-- for a retry), what is waiting to be sent next (coalesced), and a timer for it. An entry exists
-- only while one of these does.

local busy = {};
-- sender job id -> { state, notice, deadline, retries?, payload? and urgency? (set by a
-- web_push/push handler) }; kept to four fields in the usual case, one hash part of four.
local jobs = {};
local recent = cache.new(USER_CACHE_SIZE); -- subscription -> when it was last pushed
local buckets = cache.new(USER_CACHE_SIZE); -- account -> { tokens, stamp }
local bucket_rate = per_minute / 60;

local function bucket_wait(user, t)
	if per_minute <= 0 then return 0; end
	local b = buckets:get(user);
	if not b then return 0; end
	local tokens = math.min(per_minute, b.tokens + (t - b.stamp) * bucket_rate);
	if tokens >= 1 then return 0; end
	return (1 - tokens) / bucket_rate;
end

local function take_token(user, t)
	if per_minute <= 0 then return; end
	local b = buckets:get(user);
	if not b then
		b = { tokens = per_minute, stamp = t };
		buckets:set(user, b);
	end
	b.tokens = math.min(per_minute, b.tokens + (t - b.stamp) * bucket_rate) - 1;
	b.stamp = t;
end

local function wait_time(state, t)
	local last = recent:get(state.key);
	local wait = last and (last + min_interval - t) or 0;
	return math.max(wait, bucket_wait(state.user, t));
end

local function settle(state)
	if not (state.in_flight or state.pending or state.timer) and busy[state.key] == state then
		busy[state.key] = nil;
	end
end

-- Forgets what is in progress for a subscription that was forgotten.
local function drop_pushes(user, endpoint)
	local key = subscription_key(user, endpoint);
	local state = busy[key];
	if not state then return; end
	busy[key] = nil;
	state.dropped = true;
	cancel(state.timer);
	if state.in_flight then cancel(state.in_flight.retry_timer); end
	state.pending, state.timer = nil, nil;
end

--------------------------------------------------------------------------------------------------
-- The one place where subscriptions are written, and so the one place where one is forgotten:
-- storage first (when it fails nothing changes), then the cache, then each forgotten
-- subscription's session tie, its pushes in progress, and the web_push/unregistered event.
-- Used by enable (and its device cap), disable, gone, and too many errors.

local function change_subscriptions(user, add, remove, reason)
	local entry, err = load_user(user);
	if not entry then return nil, err; end
	local subs = {};
	for endpoint, record in pairs(entry.subs) do subs[endpoint] = record; end
	if add then
		for endpoint, record in pairs(add) do subs[endpoint] = record; end
	end
	local forgotten = {};
	for _, endpoint in ipairs(remove or {}) do
		if subs[endpoint] ~= nil then
			subs[endpoint] = nil;
			forgotten[#forgotten + 1] = endpoint;
		end
	end
	local ok, write_err = sub_store:set(user, next(subs) ~= nil and subs or nil);
	if not ok then
		module:log("error", "Cannot store the push subscriptions of %s: %s", user, tostring(write_err));
		return nil, write_err or "storage failed";
	end
	users:set(user, make_entry(user, subs));
	local account = user .. "@" .. host;
	for _, endpoint in ipairs(forgotten) do
		detach(user, endpoint);
		drop_pushes(user, endpoint);
		module:log("info", "Forgot push subscription %s of %s (%s)", label(endpoint), account, reason);
		module:fire_event("web_push/unregistered", {
			username = user, account = account, endpoint = endpoint, reason = reason,
		});
	end
	return true;
end

local function forget(user, endpoint, reason)
	return change_subscriptions(user, nil, { endpoint }, reason);
end

local function set_errors(user, endpoint, errors)
	local entry = load_user(user);
	local record = entry and entry.subs[endpoint];
	if not record or record.errors == errors then return; end
	local changed = {};
	for k, v in pairs(record) do changed[k] = v; end
	changed.errors = errors;
	change_subscriptions(user, { [endpoint] = changed });
end

--------------------------------------------------------------------------------------------------
-- What a stanza means for a push (mod_cloud_notify's notion of important).

local function is_call(message)
	return message:get_child("propose", xmlns_jmi) ~= nil;
end

local function body_of(message)
	return message:get_child_text("body") or message:get_child_text("body", "jabber:client");
end

-- The message a stanza carries (the forwarded one of a received carbon), and whether it
-- counts at all: a carbon of what the user sent never is important.
local function unwrap(stanza)
	local carbon = stanza:get_child("received", xmlns_carbons);
	if not carbon then
		if stanza:get_child("sent", xmlns_carbons) then return stanza, true; end
		return stanza, false;
	end
	local forwarded = carbon:get_child("forwarded", xmlns_forward);
	local inner = forwarded and forwarded:child_with_name("message");
	if not inner then return stanza, true; end
	return inner, false;
end

-- Children that make a message important whatever else it holds (encrypted, a call), by
-- namespace and name: one look at each child instead of a search per kind.
local important_children = {
	["eu.siacs.conversations.axolotl"] = { encrypted = true };
	["urn:xmpp:omemo:0"] = { encrypted = true };
	["urn:xmpp:omemo:2"] = { encrypted = true };
	["jabber:x:encrypted"] = { x = true };
	["urn:xmpp:openpgp:0"] = { openpgp = true };
	[xmlns_jmi] = { propose = true };
};

local function is_important(message, sent_carbon)
	if sent_carbon then return false; end
	local kind = message.attr.type;
	if kind == "headline" or kind == "error" then return false; end
	local tags = message.tags;
	for i = 1, #tags do
		local names = important_children[tags[i].attr.xmlns];
		if names and names[tags[i].name] then return true; end
	end
	if kind == "groupchat" and message:get_child("subject") then return false; end
	local body = body_of(message);
	return body ~= nil and body ~= "";
end

-- A notice: what one push says, before it goes to a subscription. nil for stanzas that never
-- cause a push.
local function describe(stanza)
	if stanza.name ~= "message" then return nil; end
	local message, sent_carbon = unwrap(stanza);
	local important = is_important(message, sent_carbon);
	if important_only and not important then return nil; end
	-- Four fields (urgency follows from importance; sender and body only when the payload may
	-- carry them): one small table per message.
	local notice = {
		count = 1;
		important = important;
		stanza = stanza;
		done = latency();
	};
	if with_sender then notice.sender = message.attr.from; end
	if with_body then notice.body = body_of(message); end
	return notice;
end

local urgency_rank = { ["very-low"] = 0, low = 1, normal = 2, high = 3 };

-- A notice's urgency: its own (pings, merged notices), else what its importance says.
local function urgency_of(notice)
	return notice.urgency or (notice.important and "high" or "normal");
end

local function copy_notice(notice)
	local c = {};
	for k, v in pairs(notice) do c[k] = v; end
	return c;
end

-- Folds notice n into `into` (a notice of our own): counts add up, the last important stanza
-- speaks for all.
local function merge(into, n)
	local urgency = urgency_of(n);
	if urgency_rank[urgency] > urgency_rank[urgency_of(into)] then into.urgency = urgency; end
	into.count = into.count + n.count;
	if n.important or not into.important then
		into.sender, into.body, into.stanza = n.sender, n.body, n.stanza;
	end
	into.important = into.important or n.important;
	into.ping = into.ping and n.ping;
end

-- At most once per stanza and subscription: by the stanza object (smacks hands the same object
-- to every event about it) and by its archive id (MAM and delivery see different copies).
-- Both remember a subscription key, or a set of them when a stanza goes to several: the usual
-- case (one subscription) makes no table. Archive ids are kept in two generations of up to
-- SEEN_GENERATION each, the older dropped whole when the newer is full: removing ids one by one
-- leaves dead nodes in a Lua table's collision chains until it is rehashed, and with that churn
-- each lookup walked long chains (measured: ~60 µs per push once 4,096 ids had gone round).
local SEEN_GENERATION = 2048;
local seen, seen_older, seen_count = {}, {}, 0; -- archive id -> key or set

local function stanza_id(stanza, account)
	local tag = stanza:get_child_with_attr("stanza-id", xmlns_sid, "by", account);
	return tag and tag.attr.id;
end

-- Adds key to what `map[id]` holds; false if it was there already.
local function add_key(map, id, key)
	local had = map[id];
	if had == nil then
		map[id] = key;
	elseif had == key then
		return false;
	elseif type(had) == "string" then
		map[id] = { [had] = true, [key] = true };
	elseif had[key] then
		return false;
	else
		had[key] = true;
	end
	return true;
end

local function holds(map, id, key)
	local had = map[id];
	return had == key or (type(had) == "table" and had[key] == true);
end

local function first_time(stanza, sid, key)
	-- The mark sits on the stanza itself, as mod_cloud_notify's `_push_notify` does: a weak-keyed
	-- table of stanzas would cost the collector a pass over all its entries in every cycle.
	if not add_key(stanza, "_web_push", key) then return false; end
	if not sid then return true; end
	if holds(seen_older, sid, key) then return false; end
	if seen[sid] == nil then
		if seen_count >= SEEN_GENERATION then
			seen_older, seen, seen_count = seen, {}, 0;
		end
		seen_count = seen_count + 1;
	end
	return add_key(seen, sid, key);
end

--------------------------------------------------------------------------------------------------
-- The payload (DESIGN.md) and its size limit.

-- `into`: a table to fill (see `scratch` below) instead of a new one.
local function payload_for(account, notice, into)
	local payload = into or {};
	payload.account, payload["message-count"] = account, notice.count;
	payload.important, payload["last-message-sender"], payload["last-message-body"] = nil, nil, nil;
	if notice.ping then return payload; end
	payload.important = notice.important;
	if with_sender and notice.sender then
		payload["last-message-sender"] = notice.sender;
	end
	local body = with_body and notice.body or nil;
	if body == "" then body = nil; end
	if not body and notice.important then body = dummy_body; end
	payload["last-message-body"] = body;
	return payload;
end

-- An upper bound of the JSON's size (every byte escaped as \u00XX), to skip encoding in the
-- usual case; nil when the payload holds something else than strings, numbers and booleans.
local function size_bound(payload)
	local size = 2;
	for k, v in pairs(payload) do
		local kind = type(v);
		if type(k) ~= "string" then return nil; end
		if kind == "string" then
			size = size + 6 * (#k + #v) + 6;
		elseif kind == "number" or kind == "boolean" then
			size = size + 6 * #k + 30;
		else
			return nil;
		end
	end
	return size;
end

-- Cuts a UTF-8 string to at most n bytes, at a character boundary.
local function utf8_cut(text, n)
	if n >= #text then return text; end
	if n <= 0 then return ""; end
	local b = text:byte(n + 1);
	while n > 0 and b and b >= 0x80 and b < 0xC0 do -- n+1 is a continuation byte
		n = n - 1;
		b = text:byte(n + 1);
	end
	return text:sub(1, n);
end

-- What JSON makes of each byte of a string (util.json and the native library escape alike).
local short_escapes = { [8] = true, [9] = true, [10] = true, [12] = true, [13] = true };
local function escaped_size(byte)
	if byte == 34 or byte == 92 then return 2; end
	if byte < 32 then return short_escapes[byte] and 2 or 6; end
	return 1;
end

-- Shortens the body so the payload's JSON fits: as much of it as fits, whole characters, and
-- an ellipsis. Reads no further into the body than fits.
local function cut_body(payload)
	local body = payload["last-message-body"];
	payload["last-message-body"] = "";
	local budget = MAX_JSON - #json.encode(payload) - #ELLIPSIS;
	local used, n = 0, 0;
	while n < #body do
		local cost = escaped_size(body:byte(n + 1));
		if used + cost > budget then break; end
		used, n = used + cost, n + 1;
	end
	local kept = utf8_cut(body, n);
	payload["last-message-body"] = kept ~= "" and kept .. ELLIPSIS or nil;
end

-- The payload as the sender takes it: the table when it surely fits, else JSON within MAX_JSON
-- (a long body cut at a character boundary, never refused).
local function fit(payload)
	local bound = size_bound(payload);
	if bound and bound <= MAX_JSON then return payload; end
	local ok, encoded = pcall(json.encode, payload);
	if not ok or type(encoded) ~= "string" then return nil, "payload cannot be JSON"; end
	local body = payload["last-message-body"];
	if #encoded > MAX_JSON and type(body) == "string" then
		cut_body(payload);
		encoded = json.encode(payload);
	end
	if #encoded > MAX_JSON and payload["last-message-sender"] ~= nil then
		-- A sender address so long that no body fits: without it, and the body cut again.
		payload["last-message-sender"], payload["last-message-body"] = nil, body;
		return fit(payload);
	end
	if #encoded > MAX_JSON then return nil, "payload too large"; end
	return encoded;
end

--------------------------------------------------------------------------------------------------
-- Sending and results.

local schedule, after_job; -- forward declarations

-- When no web_push/push handler can keep the payload table, one table serves every push:
-- sender:push encodes it before it returns, and a retry fills it again from the notice.
local scratch = {};

local function submit(pending, record, job_ttl, payload, urgency)
	local state = pending.state;
	local id, err = sender:push(state.endpoint, record.p256dh, record.auth, payload, job_ttl, urgency,
		topic_for(state.user .. "@" .. host));
	if not id then
		count_failed(1);
		module:log("warn", "Push to %s of %s not sent: %s", label(state.endpoint), state.user, err);
		return false;
	end
	jobs[id] = pending;
	pending.state.in_flight = pending;
	count_sent(1);
	return true;
end

local function send(state, notice)
	local user, endpoint = state.user, state.endpoint;
	local entry = load_user(user);
	local record = entry and usable(entry, endpoint) and entry.subs[endpoint];
	if not record then return settle(state); end
	local account = user .. "@" .. host;
	local listened = host_events.get_handlers("web_push/push") ~= nil;
	local payload, urgency = payload_for(account, notice, not listened and scratch or nil), urgency_of(notice);
	if listened then -- the event only when someone listens
		local event = {
			username = user, account = account, endpoint = endpoint, payload = payload,
			important = notice.important, urgency = urgency, stanza = notice.stanza,
		};
		if module:fire_event("web_push/push", event) then
			module:log("debug", "Push to %s of %s vetoed by %s", label(endpoint), account, event.reason or "an event handler");
			return settle(state);
		end
		payload = event.payload;
		if urgency_rank[event.urgency] then urgency = event.urgency; end
	end
	local encoded, err = fit(payload);
	if not encoded then
		count_failed(1);
		module:log("warn", "Push to %s of %s not sent: %s", label(endpoint), account, err);
		return settle(state);
	end
	local t = now();
	take_token(user, t);
	recent:set(state.key, t);
	local pending = { state = state, notice = notice, deadline = t + ttl };
	if listened then pending.payload, pending.urgency = encoded, urgency; end
	if not submit(pending, record, ttl, encoded, urgency) then settle(state); end
end

-- A new notice for a subscription (key: its subkey): sent now, or coalesced with what waits.
local function deliver(user, endpoint, key, notice)
	local state = busy[key];
	if not state then
		state = { key = key, user = user, endpoint = endpoint };
		busy[key] = state;
		if wait_time(state, now()) <= 0 then
			return send(state, notice);
		end
		state.pending = copy_notice(notice);
		return schedule(state);
	end
	if state.pending then
		merge(state.pending, notice);
	else
		state.pending = copy_notice(notice);
	end
	if not (state.in_flight or state.timer) then schedule(state); end
end

function schedule(state)
	if state.dropped or state.in_flight or state.timer then return; end
	if not state.pending then return settle(state); end
	local wait = wait_time(state, now());
	state.timer = after(math.max(wait, 0.001), function ()
		state.timer = nil;
		if state.dropped or state.in_flight then return; end
		if wait_time(state, now()) > 0 then return schedule(state); end
		local notice = state.pending;
		state.pending = nil;
		if notice then send(state, notice); else settle(state); end
	end);
end

-- The subscription's job is done (whatever the outcome): what waits goes next.
function after_job(state)
	state.in_flight = nil;
	if state.dropped then return; end
	if state.pending then schedule(state); else settle(state); end
end

local function backoff(attempt, retry_after)
	local delay = math.min(RETRY_CAP, RETRY_BASE * 2 ^ (attempt - 1));
	delay = delay * (0.5 + math.random() * 0.5);
	if type(retry_after) == "number" and retry_after > delay then delay = retry_after; end
	return delay;
end

local config_problem_logged = {};

-- The retry of a job, unless its subscription was forgotten or its TTL ran out meanwhile.
local function retry(pending)
	pending.retry_timer = nil;
	local state = pending.state;
	if state.dropped then return; end
	pending.retries = (pending.retries or 0) + 1;
	local left = math.floor(pending.deadline - now());
	-- The subscription as stored now (its keys may have been renewed meanwhile).
	local entry, load_err = load_user(state.user);
	local record = entry and usable(entry, state.endpoint) and entry.subs[state.endpoint];
	if left < 1 then
		count_failed(1);
		module:log("warn", "Push to %s of %s failed: its TTL ran out while retrying", label(state.endpoint), state.user);
	elseif not entry then
		count_failed(1);
		module:log("warn", "Push to %s of %s not retried: cannot read its subscriptions (%s)", label(state.endpoint),
			state.user, tostring(load_err));
	elseif not record then
		count_failed(1);
		module:log("info", "Push to %s of %s not retried: the subscription is no longer allowed or stored",
			label(state.endpoint), state.user);
	else
		local payload, err = pending.payload, nil;
		if payload == nil then -- it went out of the shared table: fill it again
			payload, err = fit(payload_for(state.user .. "@" .. host, pending.notice, scratch));
		end
		if not payload then
			count_failed(1);
			module:log("warn", "Push to %s of %s not retried: %s", label(state.endpoint), state.user, err);
		elseif submit(pending, record, left, payload, pending.urgency or urgency_of(pending.notice)) then
			return;
		end
	end
	pending.notice.done();
	after_job(state);
end

local function on_result(id, outcome, code, retry_after, reason_text, elapsed)
	local pending = jobs[id];
	if not pending then return; end
	jobs[id] = nil;
	local state = pending.state;
	local user, endpoint = state.user, state.endpoint;
	local name, account = label(endpoint), user .. "@" .. host;
	local status = code and (" HTTP " .. tostring(code)) or "";
	local reason = tostring(reason_text or outcome);

	local attempts = (pending.retries or 0) + 1;
	if outcome == "retry" or outcome == "network" then
		local delay = backoff(attempts, retry_after);
		if not state.dropped and attempts < RETRY_ATTEMPTS and pending.deadline - now() - delay >= 1 then
			count_retried(1);
			module:log("debug", "Push to %s of %s will be retried in %.1fs (%s%s)", name, account, delay, reason, status);
			pending.retry_timer = after(delay, function () retry(pending); end);
			return;
		end
		count_failed(1);
		pending.notice.done();
		module:log(state.dropped and "debug" or "warn", "Push to %s of %s failed after %d attempt(s) (%s%s)",
			name, account, attempts, reason, status);
		return after_job(state);
	end

	pending.notice.done();
	if outcome == "delivered" then
		count_delivered(1);
		module:log("debug", "Push to %s of %s delivered (%s%s, %.3fs)", name, account, reason, status, elapsed or 0);
		local entry = not state.dropped and load_user(user);
		local record = entry and entry.subs[endpoint];
		if record and (tonumber(record.errors) or 0) > 0 then
			set_errors(user, endpoint, 0);
		end
		return after_job(state);
	elseif outcome == "gone" then
		count_gone(1);
		module:log("info", "Push subscription %s of %s is gone (%s%s)", name, account, reason, status);
		if state.dropped or forget(user, endpoint, "gone") then return; end
		return after_job(state); -- storage failed: it stays, and the next push finds out again
	end

	-- Rejected: the request was refused (other 4xx, or the endpoint refused at send time).
	count_failed(1);
	local entry = not state.dropped and load_user(user);
	local record = entry and entry.subs[endpoint];
	local errors = (record and tonumber(record.errors) or 0) + 1;
	if (code == 400 or code == 401 or code == 403) and not config_problem_logged[code] then
		config_problem_logged[code] = true;
		module:log("warn", "Push service refused a push to %s of %s (%s%s): this looks like a configuration "
			.. "problem (VAPID key or web_push_vapid_subject); error %d of %d for this subscription",
			name, account, reason, status, errors, max_errors);
	else
		module:log("info", "Push to %s of %s refused (%s%s); error %d of %d", name, account, reason, status, errors, max_errors);
	end
	if record then
		if errors >= max_errors and forget(user, endpoint, "errors") then return; end
		set_errors(user, endpoint, errors);
	end
	return after_job(state);
end

local function handle_result(...)
	local ok, err = pcall(on_result, ...);
	if not ok then
		module:log("error", "Handling a push result failed: %s", err);
	end
end

local function drain()
	local ok, err = pcall(sender.drain, sender, handle_result);
	if not ok then
		module:log("error", "Reading push results failed: %s", err);
	end
end

--------------------------------------------------------------------------------------------------
-- When to push (mod_cloud_notify's event model).

-- One stanza, to an account's subscriptions (except those in `skip`), each at most once.
local function push_stanza(user, stanza, sid, skip)
	local entry = load_user(user);
	if not (entry and next(entry.subs)) then return; end
	local notice = describe(stanza);
	if not notice then return; end
	local account = user .. "@" .. host;
	sid = sid or stanza_id(stanza, account);
	for endpoint in pairs(entry.subs) do
		if usable(entry, endpoint) and not (skip and skip[endpoint]) then
			local key = subkey(entry, user, endpoint);
			if first_time(stanza, sid, key) then
				deliver(user, endpoint, key, notice);
			end
		end
	end
end

-- Subscriptions tied to a session of the account: those get pushes through smacks events.
local function tied_endpoints(user)
	local tied = {};
	for _, session in pairs(sessions_of(user)) do
		local s = session.web_push;
		if s then
			for endpoint in pairs(s.endpoints) do tied[endpoint] = true; end
		end
	end
	return tied;
end

-- Stanzas queued for one session, to the subscriptions tied to it. While hibernating, one
-- important push per hibernation (after it, the device knows to come back).
local function push_session(session, s, stanzas)
	local user = session.username;
	local entry = load_user(user);
	if not entry then return; end
	local account = user .. "@" .. host;
	local described = {};
	for i = 1, #stanzas do
		local stanza = stanzas[i];
		local notice = type(stanza) == "table" and stanza.name and describe(stanza);
		if notice then
			described[#described + 1] = { stanza = stanza, notice = notice, sid = stanza_id(stanza, account) };
		end
	end
	if not described[1] then return; end
	local hib = session.hibernating and s.hib;
	local pushed;
	for endpoint in pairs(s.endpoints) do
		if usable(entry, endpoint) then
			local key = subkey(entry, user, endpoint);
			local notice;
			for _, d in ipairs(described) do
				if first_time(d.stanza, d.sid, key) then
					if notice then merge(notice, d.notice); else notice = copy_notice(d.notice); end
				end
			end
			if notice and not (hib and (hib.important or (hib.any and not notice.important))) then
				deliver(user, endpoint, key, notice);
				pushed = pushed or notice.important or false;
			end
		end
	end
	if hib and pushed ~= nil then
		hib.any = true;
		if pushed then
			hib.important = true;
			restore_hibernation(session, s);
		end
	end
end

local function pushable_session(session)
	local s = session.web_push;
	if s and next(s.endpoints) then return s; end
end

module:hook("smacks-hibernation-start", function (event)
	local session = event.origin;
	local s = pushable_session(session);
	if not s then return; end
	s.hib = {};
	extend_hibernation(session, s);
	push_session(session, s, event.queue or {});
end);

module:hook("smacks-hibernation-stanza-queued", function (event)
	local session = event.origin;
	local s = pushable_session(session);
	if not s or not event.stanza then return; end
	s.hib = s.hib or {};
	push_session(session, s, { event.stanza });
end);

module:hook("smacks-hibernation-end", function (event)
	local session = event.resumed or event.origin;
	local s = session.web_push;
	if not s then return; end
	s.hib = nil;
	s.extended = nil; -- mod_smacks let its watchdog go
	cancel(s.batch_timer);
	s.batch_timer, s.batch = nil, nil;
end);

-- A live session that does not acknowledge: one push for the burst, a moment later.
module:hook("smacks-ack-delayed", function (event)
	local session = event.origin;
	local s = pushable_session(session);
	if not s then return; end
	local batch = s.batch;
	if not batch then
		batch = {};
		s.batch = batch;
		s.batch_timer = after(BATCH_DELAY, function ()
			if s.batch == batch then s.batch, s.batch_timer = nil, nil; end
			if session.destroyed or session.web_push ~= s then return; end
			push_session(session, s, batch);
		end);
	end
	if event.stanza then
		batch[#batch + 1] = event.stanza;
	elseif type(event.queue) == "table" then
		for _, stanza in ipairs(event.queue) do batch[#batch + 1] = stanza; end
	end
end);

module:hook("resource-unbind", function (event)
	local session = event.session;
	local s = session and session.web_push;
	if s then
		cancel(s.batch_timer);
		s.batch_timer, s.batch = nil, nil;
	end
end);

local function local_user(address)
	if type(address) ~= "string" then return nil; end
	local node, domain = jid.split(address);
	if domain == host then return node; end
end

module:hook("message/offline/handle", function (event)
	local stanza = event.stanza;
	local user = event.username or local_user(stanza.attr.to);
	if user then push_stanza(user, stanza); end
end, 1);

module:hook("message/bare/groupchat", function (event)
	local user = local_user(event.stanza.attr.to);
	if user then push_stanza(user, event.stanza); end
end, 1);

-- Archived for an account that has sessions: to subscriptions not tied to one (calls to all).
module:hook("archive-message-added", function (event)
	local user, stanza = event.for_user, event.stanza;
	if not (user and stanza and host_sessions[user]) then return; end
	local to = stanza.attr.to;
	local recipient = to and local_user(to) or (not to and event.origin and event.origin.username);
	if recipient ~= user then return; end
	local message = unwrap(stanza);
	local skip = not is_call(message) and tied_endpoints(user) or nil;
	push_stanza(user, stanza, event.id ~= nil and tostring(event.id) or nil, skip);
end);

-- Other modules ask for a push (not caused by a stanza).
module:hook("cloud-notify-ping", function (event)
	local user = event.user;
	if type(user) ~= "string" then return; end
	local entry = load_user(user);
	if not entry then return; end
	local notice;
	for endpoint in pairs(entry.subs) do
		if usable(entry, endpoint) then
			notice = notice or { count = 0, ping = true, important = false, urgency = "low", done = latency() };
			deliver(user, endpoint, subkey(entry, user, endpoint), notice);
		end
	end
end);

--------------------------------------------------------------------------------------------------
-- Protocol: discovery, enable, disable.

module:hook("account-disco-info", function (event)
	local reply = event.reply or event.stanza;
	reply:tag("feature", { var = xmlns_push }):up();
	reply:tag("x", { xmlns = "jabber:x:data", type = "result" })
		:tag("field", { var = "FORM_TYPE", type = "hidden" }):text_tag("value", key_form_type):up()
		:tag("field", { var = "webpush#public-key" }):text_tag("value", public_key):up()
	:up();
end);

local error_types = {
	["bad-request"] = "modify", ["not-acceptable"] = "modify", ["not-allowed"] = "cancel",
	["item-not-found"] = "cancel", ["internal-server-error"] = "wait",
};

local function refuse(origin, stanza, condition, text)
	origin.log("debug", "Web Push request refused: %s (%s)", condition, text or "");
	origin.send(st.error_reply(stanza, error_types[condition], condition, text));
	return true;
end

local function is_space(byte)
	return byte == 32 or (byte >= 9 and byte <= 13);
end

-- The text of a child of the request, trimmed; nil and why not.
local function text_child(request, name)
	local child = request:get_child(name);
	if not child then return nil, name .. " is missing"; end
	local text = child:get_text();
	if not text then return nil, name .. " must be text only"; end
	if #text > MAX_TEXT[name] + 64 then
		return nil, name .. " is longer than " .. MAX_TEXT[name] .. " bytes";
	end
	local first, last = 1, #text;
	while first <= last and is_space(text:byte(first)) do first = first + 1; end
	while last >= first and is_space(text:byte(last)) do last = last - 1; end
	if first > last then return nil, name .. " is empty"; end
	if last - first + 1 > MAX_TEXT[name] then
		return nil, name .. " is longer than " .. MAX_TEXT[name] .. " bytes";
	end
	return text:sub(first, last);
end

module:hook("iq-set/self/" .. xmlns_push .. ":enable", function (event)
	local origin, stanza = event.origin, event.stanza;
	local request = stanza.tags[1];
	local user = origin.username;
	if not user then return refuse(origin, stanza, "not-allowed", "Not an account"); end

	local endpoint, err = text_child(request, "endpoint");
	if not endpoint then return refuse(origin, stanza, "bad-request", err); end
	local condition, why = check_endpoint(endpoint);
	if condition then return refuse(origin, stanza, condition, why); end
	local p256dh, auth;
	p256dh, err = text_child(request, "p256dh");
	if not p256dh then return refuse(origin, stanza, "bad-request", err); end
	auth, err = text_child(request, "auth");
	if not auth then return refuse(origin, stanza, "bad-request", err); end
	local ok;
	ok, err = native.check_subscription(p256dh, auth);
	if not ok then return refuse(origin, stanza, "bad-request", tostring(err)); end

	local record = { p256dh = p256dh, auth = auth, enabled_at = time.now(), errors = 0 };
	if module:fire_event("web_push/registration", {
		origin = origin, stanza = stanza, username = user, endpoint = endpoint, subscription = record,
	}) then
		return refuse(origin, stanza, "not-allowed", "Push notifications are not allowed for this subscription");
	end

	local entry = load_user(user);
	if not entry then return refuse(origin, stanza, "internal-server-error", "Storage failed"); end
	-- The device cap: the least recently enabled go.
	local others = {};
	for other, other_record in pairs(entry.subs) do
		if other ~= endpoint then
			others[#others + 1] = { endpoint = other, at = type(other_record) == "table" and tonumber(other_record.enabled_at) or 0 };
		end
	end
	local victims = {};
	if #others + 1 > max_devices then
		table.sort(others, function (a, b)
			if a.at ~= b.at then return a.at < b.at; end
			return a.endpoint < b.endpoint;
		end);
		for i = 1, #others + 1 - max_devices do victims[i] = others[i].endpoint; end
	end
	if not change_subscriptions(user, { [endpoint] = record }, victims, "device-cap") then
		return refuse(origin, stanza, "internal-server-error", "Storage failed");
	end
	drop_pushes(user, endpoint); -- pushes under way used the previous keys
	attach(origin, endpoint);
	origin.log("info", "Web Push enabled for %s", label(endpoint));
	origin.send(st.reply(stanza));
	return true;
end);

module:hook("iq-set/self/" .. xmlns_push .. ":disable", function (event)
	local origin, stanza = event.origin, event.stanza;
	local user = origin.username;
	if not user then return refuse(origin, stanza, "not-allowed", "Not an account"); end
	local endpoint, err = text_child(stanza.tags[1], "endpoint");
	if not endpoint then return refuse(origin, stanza, "bad-request", err); end
	local entry = load_user(user);
	if not entry then return refuse(origin, stanza, "internal-server-error", "Storage failed"); end
	if entry.subs[endpoint] == nil then
		return refuse(origin, stanza, "item-not-found", "No subscription with this endpoint");
	end
	if not forget(user, endpoint, "disabled") then
		return refuse(origin, stanza, "internal-server-error", "Storage failed");
	end
	origin.send(st.reply(stanza));
	return true;
end);

--------------------------------------------------------------------------------------------------
-- Results arrive through the sender's fd, watched by Prosody's network loop.

local server = require "net.server";
local watcher, poller;
if server.watchfd then
	watcher = server.watchfd(sender:fd(), function ()
		local ok, err = pcall(drain);
		if not ok then module:log("error", "Draining push results failed: %s", err); end
	end);
else
	module:log("warn", "net.server has no watchfd; polling for push results");
	poller = module:add_timer(0.1, function ()
		local ok, err = pcall(drain);
		if not ok then module:log("error", "Draining push results failed: %s", err); end
		return 0.1;
	end);
end

-- The web client files (service worker, Converse.js plugin) over Prosody's HTTP server.
module:require "web_files".serve(module:get_directory() .. "/web");

-- After a reload, sessions keep their ties (plain data); hibernating ones get their extension
-- back unless they already had their push.
for _, account in pairs(host_sessions) do
	for _, session in pairs(account.sessions or {}) do
		local s = session.web_push;
		if s and session.hibernating and not (s.hib and s.hib.important) then
			extend_hibernation(session, s);
		end
	end
end

function module.unload()
	if watcher then
		if watcher.close then
			watcher:close();
		elseif watcher.setflags then
			watcher:setflags(false, false);
		end
		watcher = nil;
	end
	if poller then poller:stop(); poller = nil; end
	for timer in pairs(timers) do timer:stop(); end
	timers = {};
	sender:close();
	for _, account in pairs(host_sessions) do
		for _, session in pairs(account.sessions or {}) do
			local s = session.web_push;
			if s then release_session(session, s); end
		end
	end
	busy, jobs = {}, {};
end

module:log("debug", "Web Push ready; VAPID subject %s", subject);
