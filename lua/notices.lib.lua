-- What a stanza means for a push (mod_cloud_notify's notion of important), and what a push says.
--
-- A notice is one push's content before it goes to a subscription:
--   { count =, important =, stanza =, done =, sender =, body =, lang =, conversation =, urgency =,
--     ping =, call =, silent = }
-- (sender and body only when the payload may carry them, lang with the body; urgency only when it
-- does not follow from importance; done() ends its latency sample; call for a call proposal, which
-- rings at once; silent for a group chat message that is only counted). Notices of one stanza are
-- shared by every subscription it goes to; a notice that is merged into is a copy of one's own.
--
-- With web_push_client_url the payload is also a declarative push message (WebKit's Declarative
-- Web Push, the Push API's "declarative push message"): "web_push": 8030, a "notification" with
-- title, body, navigate and lang, "app_badge" and "mutable": true, so that a service worker may
-- still show it its own way. The sender adds "tag" to both.

local jid = require "util.jid";

local xmlns_sid = "urn:xmpp:sid:0";
local xmlns_carbons = "urn:xmpp:carbons:2";
local xmlns_forward = "urn:xmpp:forward:0";
local xmlns_jmi = "urn:xmpp:jingle-message:0";
local xmlns_muc_user = "http://jabber.org/protocol/muc#user";
local xmlns_markers = "urn:xmpp:chat-markers:0";

-- What the declarative notification says when the payload carries no body.
local DEFAULT_BODY = "New message";

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

-- A message's body text, whether its <body/> shares the message's namespace or names
-- jabber:client itself.
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

-- What a message is: "groupchat", "private" (through a room: a private message or an invitation,
-- which carry the room's muc#user element) or "chat".
local function kind_of(message)
	if message.attr.type == "groupchat" then return "groupchat"; end
	if message.attr.from and message:get_child("x", xmlns_muc_user) then return "private"; end
	return "chat";
end

-- Which conversation a message belongs to, as the sender keys Topic and tag by it: the room for
-- a group chat message; the occupant for a private message in a room (a conversation of its own,
-- as clients show it); else the other party's bare JID.
local function conversation_of(message, account, kind)
	local from, to = message.attr.from, message.attr.to;
	if kind == "groupchat" then return from and jid.bare(from); end
	if kind == "private" then return from; end
	local peer = from and jid.bare(from);
	if peer == nil or peer == account then peer = to and jid.bare(to); end
	return peer;
end

-- The language of a message's body, for the declarative notification.
local function lang_of(message)
	local body = message:get_child("body") or message:get_child("body", "jabber:client");
	return body and body.attr["xml:lang"] or message.attr["xml:lang"];
end

-- Whether a message the user sends from one of their clients shows them active in its
-- conversation: something they wrote (or a call), or a read marker. Chat states and delivery
-- receipts are sent by clients on their own.
local function is_activity(stanza)
	local kind = stanza.attr.type;
	if kind == "error" or kind == "headline" then return false; end
	if stanza:get_child("displayed", xmlns_markers) or stanza:get_child("acknowledged", xmlns_markers) then
		return true;
	end
	return is_important(stanza, false);
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

-- Folds notice n into `into` (a copy of one's own, of the same conversation): counts add up, the
-- most urgent urgency stays, the last important stanza speaks for all, a call stays a call, and it
-- is only counted when both are.
local function merge(into, n)
	local urgency = urgency_of(n);
	if urgency_rank[urgency] > urgency_rank[urgency_of(into)] then into.urgency = urgency; end
	into.count = into.count + n.count;
	if n.important or not into.important then
		into.sender, into.body, into.lang, into.stanza, into.conversation = n.sender, n.body, n.lang, n.stanza, n.conversation;
	end
	into.important = into.important or n.important;
	into.ping = into.ping and n.ping;
	into.call = into.call or n.call;
	into.silent = into.silent and n.silent;
	into.done = into.done or n.done;
end

-- Folds notice n into `list` (notices of one's own, one per conversation, oldest first): merged
-- into the one of its conversation, else a copy of it at the end.
local function fold(list, n)
	local conversation = n.conversation;
	for i = 1, #list do
		if list[i].conversation == conversation then return merge(list[i], n); end
	end
	list[#list + 1] = copy(n);
end

-- options: important_only, with_body, with_sender, important_body (nil: none), latency (a
-- module:measure "times" function), judge(user, account, message, kind) -> "push" | "count" | nil
-- (groupchat.verdict: what a message from or through a room means), client_url (nil: no
-- declarative members).
local function new(options)
	local important_only, with_body, with_sender = options.important_only, options.with_body, options.with_sender;
	local important_body, latency, judge, client_url = options.important_body, options.latency, options.judge,
		options.client_url;

	-- The notice of a stanza to `account` (of `user`); nil for stanzas that never cause a push.
	local function of(stanza, account, user)
		if stanza.name ~= "message" then return nil; end
		local message, sent_by_user = unwrap(stanza);
		local important = is_important(message, sent_by_user);
		if important_only and not important then return nil; end
		local kind = kind_of(message);
		local silent;
		if kind ~= "chat" and judge and not sent_by_user then
			local verdict = judge(user, account, message, kind);
			if verdict == nil then return nil; end
			silent = verdict == "count" or nil;
		end
		local notice = {
			count = 1;
			important = important;
			stanza = stanza;
			conversation = conversation_of(message, account, kind);
			silent = silent;
			call = is_call(message) or nil;
			done = not silent and latency() or nil;
		};
		if with_sender then notice.sender = message.attr.from; end
		if with_body then
			notice.body = body_of(message);
			notice.lang = notice.body and lang_of(message);
		end
		return notice;
	end

	-- A push not caused by a stanza (cloud-notify-ping).
	local function ping()
		return { count = 0, ping = true, important = false, urgency = "low", done = latency() };
	end

	-- The declarative members: what the service worker would show (DESIGN.md), where the web
	-- client is, the unread count. Tables are reused with the payload's: every field is set.
	local function declare(p, account, lang, badge)
		local n = p.notification;
		if type(n) ~= "table" then
			n = {};
			p.notification = n;
		end
		local sender = p["last-message-sender"];
		n.title = sender and jid.bare(sender) or account;
		n.body = p["last-message-body"] or DEFAULT_BODY;
		n.navigate = client_url;
		n.lang = lang;
		n.tag = nil; -- the sender's
		p.tag = nil;
		p.web_push = 8030;
		p.app_badge = badge or 0;
		p.mutable = true;
	end

	-- The notification (DESIGN.md), into `into` when given (a table the caller reuses) instead of
	-- a new one; `extra` messages only counted since the last push add to its message-count, and
	-- `badge` is the subscription's unread count. The sender fits it to the size limit, cutting a
	-- long body.
	local function payload(account, notice, into, extra, badge)
		local p = into or {};
		p.account, p["message-count"] = account, notice.count + (extra or 0);
		p.important, p["last-message-sender"], p["last-message-body"] = nil, nil, nil;
		local lang;
		if not notice.ping then
			p.important = notice.important;
			if with_sender and notice.sender then
				p["last-message-sender"] = notice.sender;
			end
			local body = with_body and notice.body or nil;
			if body == "" then body = nil; end
			if body then lang = notice.lang; end
			if not body and notice.important then body = important_body; end
			p["last-message-body"] = body;
		end
		if client_url then declare(p, account, lang, badge); end
		return p;
	end

	return {
		of = of, ping = ping, payload = payload, fold = fold, urgency = urgency_of,
		valid_urgency = function (urgency) return urgency_rank[urgency] ~= nil; end,
		archive_id = archive_id, is_activity = is_activity,
	};
end

return { new = new, body_of = body_of };
