-- What a stanza means for a push (mod_cloud_notify's notion of important), and what a push says.
--
-- A notice is one push's content before it goes to a subscription:
--   { count =, important =, stanza =, done =, sender =, body =, conversation =, urgency =, ping = }
-- (sender and body only when the payload may carry them; urgency only when it does not follow
-- from importance; done() ends its latency sample). Notices of one stanza are shared by every
-- subscription it goes to; a notice that is merged into is a copy of one's own.

local jid = require "util.jid";

local xmlns_sid = "urn:xmpp:sid:0";
local xmlns_carbons = "urn:xmpp:carbons:2";
local xmlns_forward = "urn:xmpp:forward:0";
local xmlns_jmi = "urn:xmpp:jingle-message:0";
local xmlns_muc_user = "http://jabber.org/protocol/muc#user";

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

local urgency_rank = { ["very-low"] = 0, low = 1, normal = 2, high = 3 };

local function is_call(message)
	return message:get_child("propose", xmlns_jmi) ~= nil;
end

local function body_of(message)
	return message:get_child_text("body") or message:get_child_text("body", "jabber:client");
end

-- The message a stanza carries (the forwarded one of a received carbon), and whether it was
-- sent by the user (a sent carbon): such a message is never important.
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

local function is_important(message, sent_by_user)
	if sent_by_user then return false; end
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

-- Which conversation a message belongs to, as the sender keys Topic and tag by it: the room for
-- a group chat message, the occupant for a private message in a room (clients show those apart
-- from the room), else the other party's bare JID.
local function conversation_of(message, account)
	local from, to = message.attr.from, message.attr.to;
	if message.attr.type == "groupchat" then return from and jid.bare(from); end
	if from and message:get_child("x", xmlns_muc_user) then return from; end
	local peer = from and jid.bare(from);
	if peer == nil or peer == account then peer = to and jid.bare(to); end
	return peer;
end

-- The archive id a stanza carries (mod_mam's copy for other handlers has it).
local function archive_id(stanza, account)
	local tag = stanza:get_child_with_attr("stanza-id", xmlns_sid, "by", account);
	return tag and tag.attr.id;
end

-- A notice's urgency: its own (pings, merged notices), else what its importance says.
local function urgency_of(notice)
	return notice.urgency or (notice.important and "high" or "normal");
end

local function copy(notice)
	local c = {};
	for k, v in pairs(notice) do c[k] = v; end
	return c;
end

-- Folds notice n into `into` (a copy of one's own): counts add up, the most urgent urgency
-- stays, the last important stanza speaks for all.
local function merge(into, n)
	local urgency = urgency_of(n);
	if urgency_rank[urgency] > urgency_rank[urgency_of(into)] then into.urgency = urgency; end
	into.count = into.count + n.count;
	if n.important or not into.important then
		into.sender, into.body, into.stanza, into.conversation = n.sender, n.body, n.stanza, n.conversation;
	end
	into.important = into.important or n.important;
	into.ping = into.ping and n.ping;
end

-- options: important_only, with_body, with_sender, important_body (nil: none), latency (a
-- module:measure "times" function).
local function new(options)
	local important_only, with_body, with_sender = options.important_only, options.with_body, options.with_sender;
	local important_body, latency = options.important_body, options.latency;

	-- The notice of a stanza to `account`; nil for stanzas that never cause a push.
	local function of(stanza, account)
		if stanza.name ~= "message" then return nil; end
		local message, sent_by_user = unwrap(stanza);
		local important = is_important(message, sent_by_user);
		if important_only and not important then return nil; end
		local notice = {
			count = 1;
			important = important;
			stanza = stanza;
			conversation = conversation_of(message, account);
			done = latency();
		};
		if with_sender then notice.sender = message.attr.from; end
		if with_body then notice.body = body_of(message); end
		return notice;
	end

	-- A push not caused by a stanza (cloud-notify-ping).
	local function ping()
		return { count = 0, ping = true, important = false, urgency = "low", done = latency() };
	end

	-- The notification (DESIGN.md), into `into` when given (a table the caller reuses) instead of
	-- a new one. The sender fits it to the size limit, cutting a long body.
	local function payload(account, notice, into)
		local p = into or {};
		p.account, p["message-count"] = account, notice.count;
		p.important, p["last-message-sender"], p["last-message-body"] = nil, nil, nil;
		if notice.ping then return p; end
		p.important = notice.important;
		if with_sender and notice.sender then
			p["last-message-sender"] = notice.sender;
		end
		local body = with_body and notice.body or nil;
		if body == "" then body = nil; end
		if not body and notice.important then body = important_body; end
		p["last-message-body"] = body;
		return p;
	end

	return {
		of = of, ping = ping, payload = payload, copy = copy, merge = merge, urgency = urgency_of,
		valid_urgency = function (urgency) return urgency_rank[urgency] ~= nil; end,
		unwrap = unwrap, is_call = is_call, archive_id = archive_id,
	};
end

return { new = new };
