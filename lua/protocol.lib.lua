-- The wire protocol, urn:xmpp:webpush:0 (DESIGN.md): the VAPID key in the account's disco#info,
-- and the enable and disable IQs with the validation of everything a client sends. Bad input of
-- any kind gets a stanza error, never a Lua error or a half-written record.

local st = require "util.stanza";
local time = require "util.time";

local xmlns_push = "urn:xmpp:webpush:0";
local key_form_type = "http://jabber.org/protocol/webpush#public-key";

-- Longest text accepted in an <enable/> child before looking closer (base64url of 65 and 16
-- bytes is 87 and 22 characters; endpoints are at most 2048 bytes).
local MAX_TEXT = { endpoint = 2048, p256dh = 200, auth = 100 };

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

-- options: native, policy (the endpoint policy), public_key, max_devices, subscriptions,
-- hibernation (tie).
local function new(options)
	local native, policy, public_key = options.native, options.policy, options.public_key;
	local subscriptions, hibernation, max_devices = options.subscriptions, options.hibernation, options.max_devices;

	-- The endpoint policy, checked once, here: the sender applies the same policy at send time.
	-- nil when acceptable, else the stanza error condition and a text that names the endpoint.
	local function check_endpoint(endpoint)
		local ok, condition, text = native.check_endpoint(endpoint, policy);
		if ok then return nil; end
		text = tostring(text or condition);
		if not text:find("endpoint", 1, true) then text = "endpoint: " .. text; end
		return condition == "not-acceptable" and "not-acceptable" or "bad-request", text;
	end

	-- account-disco-info
	local function disco(reply)
		reply:tag("feature", { var = xmlns_push }):up();
		reply:tag("x", { xmlns = "jabber:x:data", type = "result" })
			:tag("field", { var = "FORM_TYPE", type = "hidden" }):text_tag("value", key_form_type):up()
			:tag("field", { var = "webpush#public-key" }):text_tag("value", public_key):up()
		:up();
	end

	local function enable(origin, stanza)
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
		if not subscriptions.add(user, endpoint, record, max_devices) then
			return refuse(origin, stanza, "internal-server-error", "Storage failed");
		end
		hibernation.tie(origin, endpoint);
		origin.log("info", "Web Push enabled for %s", subscriptions.label(endpoint));
		origin.send(st.reply(stanza));
		return true;
	end

	local function disable(origin, stanza)
		local user = origin.username;
		if not user then return refuse(origin, stanza, "not-allowed", "Not an account"); end
		local endpoint, err = text_child(stanza.tags[1], "endpoint");
		if not endpoint then return refuse(origin, stanza, "bad-request", err); end
		local ok, forgotten = subscriptions.forget(user, endpoint, "disabled");
		if not ok then return refuse(origin, stanza, "internal-server-error", "Storage failed"); end
		if not forgotten then
			return refuse(origin, stanza, "item-not-found", "No subscription with this endpoint");
		end
		origin.send(st.reply(stanza));
		return true;
	end

	return { disco = disco, enable = enable, disable = disable, xmlns = xmlns_push };
end

return { new = new };
