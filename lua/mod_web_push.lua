-- mod_web_push: Web Push notifications (RFC 8030, RFC 8291, RFC 8292) for XMPP web clients.
--
-- The protocol (urn:xmpp:webpush:0), the notification JSON, the HTTP headers and the options of
-- DESIGN.md are the contract. Encryption, signing, HTTP, retries and fitting the payload to its
-- size limit run in the native library (web_push.so beside this file, on its own threads); this
-- module decides when to push and to whom, and hands a job over.
--
-- This file holds the options, the hooks and the commands. Each *.lib.lua beside it does one job
-- (doc/layout.md): keys, subscriptions, settings, groupchat, notices, activity, schedule,
-- hibernation, results, protocol, handover, timers. Each is required once, here, and given what
-- it needs.
--
-- Options beyond DESIGN.md (README.markdown):
--   web_push_min_interval = 2: seconds between two pushes to one subscription; what arrives in
--     between is coalesced into one follow-up push (its message-count says how many).
--   web_push_max_pushes_per_minute = 30: pushes per account per minute over all its subscriptions
--     (a token bucket); beyond it pushes are coalesced the same way. 0 turns it off.
--
-- Events for other modules: web_push/registration (before a subscription is stored; true vetoes
-- it), web_push/push (before a push is sent; true vetoes, event.payload may be amended),
-- web_push/unregistered (after a subscription was forgotten; event.reason is "disabled", "gone",
-- "errors", "device-cap" or "deleted").

local jid = require "util.jid";
local time = require "util.time";

local host = module.host;

local native; -- web_push.so, loaded on demand (prosodyctl too)
local function load_native()
	if native then return native; end
	local path = module:get_directory() .. "/web_push.so";
	local open, err = package.loadlib(path, "luaopen_web_push");
	if not open then return nil, "cannot load " .. path .. ": " .. tostring(err); end
	local ok, lib = pcall(open);
	if not ok then return nil, "cannot open " .. path .. ": " .. tostring(lib); end
	native = lib;
	return lib;
end

local keys = module:require "keys";

function module.command(arg)
	return keys.command(arg, load_native);
end

if host == "*" or prosody.process_type == "prosodyctl" then
	return; -- loaded by prosodyctl, for module.command only
end
if module:get_host_type() ~= "local" then
	error("mod_web_push belongs on a VirtualHost, not on " .. host);
end

-- Everything that can fail comes before any hook is added, so a failed load leaves nothing behind.
assert(load_native());

--------------------------------------------------------------------------------------------------
-- Options, read once. The native library owns the bounds of what it takes (native.limits).

local limits = native.limits;

-- A number option within [min, max] (either may be nil); a value outside is clamped, with a warning.
local function number_option(name, default, min, max, integer)
	local value = module:get_option_number(name, default) or default;
	if integer then value = math.floor(value); end
	local clamped = math.max(min or value, math.min(max or value, value));
	if clamped ~= value then
		module:log("warn", "%s = %s is out of bounds; using %s", name, tostring(value), tostring(clamped));
	end
	return clamped;
end

local max_devices = number_option("push_max_devices", 5, 1, nil, true);
local max_errors = number_option("push_max_errors", 16, 1, nil, true);
local important_body = module:get_option_string("push_notification_important_body", "New Message!");
if important_body == "" then important_body = nil; end
local with_body = module:get_option_boolean("push_notification_with_body", false);
local with_sender = module:get_option_boolean("push_notification_with_sender", false);
local max_hibernation = number_option("push_max_hibernation_timeout", 72 * 3600, 0);
local ttl = number_option("web_push_ttl", 86400, limits.ttl[1], limits.ttl[2], true);
local important_only = module:get_option_boolean("web_push_important_only", true) ~= false;
local min_interval = number_option("web_push_min_interval", 2, 0);
local per_minute = number_option("web_push_max_pushes_per_minute", 30, 0);
local workers = number_option("web_push_workers", 2, limits.workers[1], limits.workers[2], true);
local queue_size = number_option("web_push_queue_size", 1000, limits.queue_size[1], limits.queue_size[2], true);
local timeout = number_option("web_push_timeout", 10, limits.timeout[1], limits.timeout[2]);
local allow_insecure = module:get_option_boolean("web_push_allow_insecure_endpoints", false) == true;
local endpoint_hosts = module:get_option_array("web_push_endpoint_hosts", nil);
if endpoint_hosts then -- a plain list of strings, as the native library takes it
	local names = {};
	for i, name in ipairs(endpoint_hosts) do names[i] = tostring(name); end
	endpoint_hosts = names;
end
local configured_subject = module:get_option_string("web_push_vapid_subject");
local contact_info = module:get_option("contact_info");
local groupchat_mode = module:get_option_string("web_push_groupchat", "mentions");
if groupchat_mode ~= "mentions" and groupchat_mode ~= "all" and groupchat_mode ~= "none" then
	module:log("warn", "web_push_groupchat = %q is not \"mentions\", \"all\" or \"none\"; using \"mentions\"", groupchat_mode);
	groupchat_mode = "mentions";
end
local grace = number_option("web_push_grace", 60, 0);
local client_url = module:get_option_string("web_push_client_url");
if client_url == "" then client_url = nil; end

--------------------------------------------------------------------------------------------------
-- The host's key, the sender, and the libs that do the work.

local private_key, public_key = keys.load(native, module);
local subject = keys.subject(native, configured_subject, contact_info);
local policy = { allow_insecure = allow_insecure, hosts = endpoint_hosts };

local sender = assert(native.new_sender({
	private_key = private_key; subject = subject;
	workers = workers; queue_size = queue_size; timeout = timeout;
	allow_insecure = policy.allow_insecure; hosts = policy.hosts;
}));

local now = time.monotonic or time.now;
local timers = module:require("timers").new();

-- The user's own settings come from their bookmarks in mod_pep (as mod_bookmarks depends on it);
-- a server without PEP still pushes, by web_push_groupchat alone.
local depended, mod_pep = pcall(module.depends, module, "pep");
if not depended then
	module:log("warn", "No mod_pep (%s): XEP-0492 settings in bookmarks are not read", tostring(mod_pep));
	mod_pep = nil;
end

local schedule, hibernation; -- made below; a forgotten subscription's pushes and session tie go too
local subscriptions = module:require("subscriptions").new({
	store = module:open_store("web_push");
	forgotten = function (user, endpoint)
		hibernation.untie(user, endpoint);
		schedule.drop(user, endpoint);
	end;
	renewed = function (user, endpoint) schedule.drop(user, endpoint); end;
});
local results = module:require("results").new({
	sender = sender; subscriptions = subscriptions; max_errors = max_errors;
});
local settings = module:require("settings").new({ pep = mod_pep });
local notices_lib = module:require "notices";
local groupchat = module:require("groupchat").new({ settings = settings; mode = groupchat_mode; body_of = notices_lib.body_of });
local notices = notices_lib.new({
	important_only = important_only; with_body = with_body; with_sender = with_sender;
	important_body = important_body; latency = results.latency; judge = groupchat.verdict; client_url = client_url;
});
local activity = module:require("activity").new({
	subscriptions = subscriptions; grace = grace; now = now;
	tied = function (session, endpoint) return hibernation.is_tied(session, endpoint); end;
	read = function (sub, conversation) schedule.drop_conversation(sub, conversation); end;
});
schedule = module:require("schedule").new({
	sender = sender; subscriptions = subscriptions; notices = notices; timers = timers; results = results;
	activity = activity; now = now; ttl = ttl; min_interval = min_interval; per_minute = per_minute;
});
hibernation = module:require("hibernation").new({
	subscriptions = subscriptions; notices = notices; schedule = schedule; timers = timers; activity = activity;
	max_hibernation = max_hibernation;
});
local protocol = module:require("protocol").new({
	native = native; policy = policy; public_key = public_key; max_devices = max_devices;
	subscriptions = subscriptions; hibernation = hibernation;
});
local handover = module:require("handover").new({
	sender = sender; store = module:open_store("web_push_pending"); schedule = schedule;
	subscriptions = subscriptions; results = results; timers = timers; now = now;
});

-- The web client files (service worker, Converse.js plugin) over Prosody's HTTP server.
module:require("web_files").serve(module:get_directory() .. "/web");

results.start(schedule.finished);
hibernation.resume_after_reload();
handover.resume_kept();

--------------------------------------------------------------------------------------------------
-- Hooks. When to push follows mod_cloud_notify's event model.

local function local_user(address)
	if type(address) ~= "string" then return nil; end
	local node, domain = jid.split(address);
	if domain == host then return node; end
end

local function on_disco_info(event)
	protocol.disco(event.reply or event.stanza);
end

local function on_enable(event)
	return protocol.enable(event.origin, event.stanza);
end

local function on_disable(event)
	return protocol.disable(event.origin, event.stanza);
end

local function on_hibernation_start(event)
	hibernation.started(event.origin, event.queue);
end

local function on_hibernation_stanza_queued(event)
	hibernation.queued(event.origin, event.stanza);
end

local function on_hibernation_end(event)
	hibernation.ended(event.resumed or event.origin);
end

local function on_ack_delayed(event)
	hibernation.ack_delayed(event.origin, event.stanza, event.queue);
end

local function on_resource_unbind(event)
	if event.session then hibernation.unbound(event.session); end
end

-- A message stored offline, or a group chat message to the account's bare JID.
local function on_message_to_account(event)
	local stanza = event.stanza;
	local user = event.username or local_user(stanza.attr.to);
	if not user then return; end
	subscriptions.recheck(user);
	schedule.push_stanza(user, stanza);
end

-- Archived for an account that has sessions: to subscriptions not tied to one (calls to all).
local function on_archive_message_added(event)
	local user, stanza = event.for_user, event.stanza;
	if not (user and stanza and prosody.hosts[host].sessions[user] and subscriptions.subscribed(user)) then return; end
	local to = stanza.attr.to;
	local recipient = to and local_user(to) or (not to and event.origin and event.origin.username);
	if recipient ~= user then return; end
	schedule.push_stanza(user, stanza, event.id ~= nil and tostring(event.id) or nil, hibernation.tied_unless_call);
end

-- Other modules ask for a push (not caused by a stanza).
local function on_ping(event)
	if type(event.user) == "string" then schedule.ping(event.user); end
end

-- A message or read marker one of the user's clients sends: the user is active in that
-- conversation, on that client. To a full JID it may be a private message through a room, whose
-- conversation is the occupant.
local function on_outgoing_message(event)
	local origin, stanza = event.origin, event.stanza;
	local user, to = origin.type == "c2s" and origin.username, stanza.attr.to;
	if not (user and to and subscriptions.subscribed(user) and notices.is_activity(stanza)) then return; end
	local bare = jid.bare(to);
	activity.seen(user, bare, origin);
	if bare ~= to then activity.seen(user, to, origin); end
end

-- A presence from a room to one of the user's sessions may name the user's nick there.
local function on_presence_to_session(event)
	local stanza = event.stanza;
	local room, nick = groupchat.own_nick(stanza);
	if not room then return; end
	local user = local_user(stanza.attr.to);
	if user and subscriptions.subscribed(user) then groupchat.learn(user, room, nick); end
end

-- Events of the user's own PEP service (mod_pep): bookmarks (settings, nicks) and displayed
-- updates (XEP-0490: read on another client).
local function pep_user(event)
	local config = event.service and event.service.config;
	return config and config.pep_username;
end

local function on_bookmark_published(event)
	local user = pep_user(event);
	if user then settings.published(user, event.id, event.item); end
end

local function on_pep_item_retracted(event)
	local user = pep_user(event);
	if user and event.node == settings.node then settings.retracted(user, event.id); end
end

local function on_pep_node_cleared(event)
	local user = pep_user(event);
	if user and event.node == settings.node then settings.cleared(user); end
end

local function on_displayed_published(event)
	local user = pep_user(event);
	if not (user and subscriptions.subscribed(user)) then return; end
	local session; -- the client that published it, when it is one of this host's sessions
	if type(event.actor) == "string" then
		local node, _, resource = jid.split(event.actor);
		local account = node == user and resource and prosody.hosts[host].sessions[user];
		session = account and account.sessions[resource];
	end
	activity.seen(user, event.id, session);
end

local pep_events = {
	["item-published/" .. settings.node] = on_bookmark_published;
	["item-retracted"] = on_pep_item_retracted;
	["node-purged"] = on_pep_node_cleared;
	["node-deleted"] = on_pep_node_cleared;
	["item-published/urn:xmpp:mds:displayed:0"] = on_displayed_published;
};

local function on_pep_service_added(event)
	for name, handler in pairs(pep_events) do module:hook_object_event(event.item.service.events, name, handler); end
end

local function on_pep_service_removed(event)
	for name, handler in pairs(pep_events) do module:unhook_object_event(event.item.service.events, name, handler); end
end

-- An account deleted (in-band, prosodyctl or the shell, in this process): nothing of it stays.
local function on_user_deleted(event)
	if event.host ~= host or type(event.username) ~= "string" then return; end
	local user = event.username;
	subscriptions.forget_all(user, "deleted");
	schedule.drop_account(user);
	subscriptions.drop_cached(user);
	settings.forget(user);
	groupchat.forget(user);
end

-- Disabled (Prosody 13): kept, but nothing is pushed until it is enabled again.
local function on_user_disabled(event)
	if event.host ~= host or type(event.username) ~= "string" then return; end
	schedule.drop_account(event.username);
	subscriptions.drop_cached(event.username);
end

-- The account may have been deleted and made again by another process (0.12's prosodyctl), or
-- enabled again: what it has is read from storage again.
local function on_account_news(event)
	local user = event.username or (event.session and event.session.username);
	if event.host and event.host ~= host then return; end
	if type(user) == "string" then subscriptions.drop_cached(user); end
end

local function on_server_stopping()
	handover.stopping();
end

module:hook("account-disco-info", on_disco_info);
module:hook("iq-set/self/" .. protocol.xmlns .. ":enable", on_enable);
module:hook("iq-set/self/" .. protocol.xmlns .. ":disable", on_disable);
module:hook("smacks-hibernation-start", on_hibernation_start);
module:hook("smacks-hibernation-stanza-queued", on_hibernation_stanza_queued);
module:hook("smacks-hibernation-end", on_hibernation_end);
module:hook("smacks-ack-delayed", on_ack_delayed);
module:hook("resource-unbind", on_resource_unbind);
module:hook("message/offline/handle", on_message_to_account, 1);
module:hook("message/bare/groupchat", on_message_to_account, 1);
module:hook("archive-message-added", on_archive_message_added);
module:hook("cloud-notify-ping", on_ping);
module:hook("pre-message/bare", on_outgoing_message);
module:hook("pre-message/full", on_outgoing_message);
module:hook("presence/full", on_presence_to_session, 1); -- before mod_presence delivers it
if mod_pep then module:handle_items("pep-service", on_pep_service_added, on_pep_service_removed, true); end
module:hook("user-registered", on_account_news);
module:hook("resource-bind", on_account_news);
-- Before mod_c2s (200) closes the account's sessions, whose unacked stanzas would push again.
module:hook_global("user-deleted", on_user_deleted, 300);
module:hook_global("user-disabled", on_user_disabled, 300);
module:hook_global("user-enabled", on_account_news);
-- After mod_c2s (-100) has closed the sessions, whose unacked stanzas may still cause pushes.
module:hook_global("server-stopping", on_server_stopping, -200);

--------------------------------------------------------------------------------------------------
-- Reload and unload.

function module.save()
	local saved = handover.save();
	saved.nicks = groupchat.save();
	return saved;
end

function module.restore(saved)
	handover.restore(saved);
	groupchat.restore(type(saved) == "table" and saved.nicks);
end

function module.unload()
	results.stop();
	handover.stop();
	timers.stop_all();
	sender:close();
	schedule.stop();
	hibernation.stop();
end

module:log("debug", "Web Push ready; VAPID subject %s", subject);
