-- mod_web_push against a stand-in of Prosody: notifications people want. A closed tab keeps
-- notifying; quiet while the user is active on another client (web_push_grace), and a waiting push
-- dropped when they read the conversation there; one notification per conversation (the
-- conversation handed to the sender, one waiting push per conversation); and the declarative
-- members with web_push_client_url, checked against WebKit's published format.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";
local st = require "util.stanza";
local json = require "util.json";

local JULIET, ROMEO = standin.JULIET, standin.ROMEO;
local setup, to_juliet = standin.setup, standin.to_juliet;
local ROMEO_BARE, NURSE = "romeo@montague.lit", "nurse@example.org/kitchen";
local ROOM = "balcony@rooms.example";
local CALL = [[<propose xmlns="urn:xmpp:jingle-message:0" id="c1"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"/></propose>]];
local MARKERS = "urn:xmpp:chat-markers:0";
local MDS = "urn:xmpp:mds:displayed:0";

-- Every unanswered job answered, as a quick push service would.
local function answer_all(world)
	for _, record in ipairs(world.all_jobs or {}) do
		if not record.final then world:answer(record, "delivered", { status = 201 }); end
	end
end

-- Juliet's web client, subscribed and then closed (its session hibernated); her phone online.
local function closed_tab_and_phone(options, world_options)
	local world, host = setup(options, world_options);
	local tab, sub = host:subscribed_session("juliet", "web");
	local phone = host:session("juliet", "phone");
	host:hibernate(tab);
	return world, host, tab, sub, phone;
end

local function from(sender, body, extra, attrs)
	local message = standin.message(sender, JULIET .. "/web", body, extra, attrs);
	return message;
end

-- A message juliet sends from a session (to a peer, or to a room).
local function sends(host, session, to, body, extra, kind)
	local message = st.message({ to = to, type = kind or "chat", id = "o" .. math.random(1e9) });
	if body then message:text_tag("body", body); end
	if extra then message:add_child(standin.parse(extra)); end
	return host:outgoing(session, message);
end

local function marker(name)
	return ("<%s xmlns='%s' id='m1'/>"):format(name, MARKERS);
end

describe("a closed tab (hibernated session)", function ()
	it("is notified again for a later message, under mod_smacks' own timeout after the first push", function ()
		local world, host = setup();
		local tab, sub = host:subscribed_session("juliet", "web");
		host:hibernate(tab, {}, 600);
		world:advance(1000); -- kept past its 600 s for push's sake (push_max_hibernation_timeout)
		assert.is_nil(tab.expired_at);
		host:queue(tab, from(ROMEO, "first"));
		local first_push = world.clock;
		answer_all(world);
		world:advance(3);
		host:queue(tab, from(ROMEO, "three seconds later"));
		assert.equal(2, #world:pushes_for(sub));
		answer_all(world);
		world:advance(120);
		host:queue(tab, from(NURSE, "two minutes later"));
		local pushes = world:pushes_for(sub);
		assert.equal(3, #pushes);
		assert.equal("nurse@example.org", pushes[3].job.conversation);
		answer_all(world);
		world:advance(600);
		assert.truthy(tab.expired_at, "the session ended");
		assert.truthy(tab.expired_at - first_push <= 602, "600 s after the first push, not extended by the later ones");
	end);

	it("gives a burst to several conversations one notification each", function ()
		local world, host = setup();
		local tab, sub = host:subscribed_session("juliet", "web");
		host:hibernate(tab, { from(ROMEO, "a"), from(NURSE, "b"), from(ROMEO, "c") });
		answer_all(world);
		world:advance(3);
		answer_all(world);
		local pushes = world:pushes_for(sub);
		assert.equal(2, #pushes);
		assert.same({ ROMEO_BARE, 2 }, { pushes[1].job.conversation, pushes[1].notification["message-count"] });
		assert.same({ "nurse@example.org", 1 }, { pushes[2].job.conversation, pushes[2].notification["message-count"] });
	end);
end);

describe("one notification per conversation", function ()
	it("hands each push its conversation, for every subscription of the account", function ()
		local world, host = setup();
		local _, subs = host:subscribed_offline("juliet", 2);
		host:offline("juliet", to_juliet("hi"));
		for _, sub in ipairs(subs) do
			local push = world:last_push(sub);
			assert.equal(ROMEO_BARE, push.job.conversation);
			assert.equal(sub.endpoint, push.job.endpoint);
		end
	end);

	it("keeps what waits for each conversation apart, and sends them in turn", function ()
		local world, host = setup({ web_push_min_interval = 2 });
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		answer_all(world);
		host:offline("juliet", to_juliet("two"));
		host:offline("juliet", from(NURSE, "three"));
		host:offline("juliet", to_juliet("four"));
		world:advance(2.5);
		answer_all(world);
		world:advance(2.5);
		answer_all(world);
		local pushes = world:pushes_for(sub);
		assert.equal(3, #pushes);
		assert.same({ ROMEO_BARE, 2 }, { pushes[2].job.conversation, pushes[2].notification["message-count"] });
		assert.same({ "nurse@example.org", 1 }, { pushes[3].job.conversation, pushes[3].notification["message-count"] });
	end);
end);

describe("while the user is active on another client (web_push_grace)", function ()
	it("a reply from the phone within the grace gives no push for that chat; other chats still push", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone();
		sends(host, phone, ROMEO_BARE, "on my way");
		host:queue(tab, from(ROMEO, "see you"));
		answer_all(world);
		assert.equal(0, #world:pushes_for(sub));
		host:queue(tab, from(NURSE, "dinner"));
		assert.equal(1, #world:pushes_for(sub));
		answer_all(world);
		-- After the grace, the chat pushes again.
		world:advance(61);
		host:queue(tab, from(ROMEO, "where are you?"));
		assert.equal(2, #world:pushes_for(sub));
	end);

	it("counts read markers and displayed updates, not chat states or receipts", function ()
		local function quiet_after(act)
			local world, host, tab, sub, phone = closed_tab_and_phone();
			act(host, phone);
			host:queue(tab, from(ROMEO, "hello"));
			return #world:pushes_for(sub) == 0;
		end
		assert.is_true(quiet_after(function (host, phone) sends(host, phone, ROMEO_BARE, nil, marker("displayed")); end));
		assert.is_true(quiet_after(function (host, phone) sends(host, phone, ROMEO_BARE, nil, marker("acknowledged")); end));
		assert.is_true(quiet_after(function (host, phone)
			host.world:pep(host.host).publish("juliet", phone.full_jid, MDS, ROMEO_BARE,
				("<displayed xmlns='%s'><stanza-id xmlns='urn:xmpp:sid:0' by='%s' id='s1'/></displayed>"):format(MDS, JULIET));
		end));
		assert.is_false(quiet_after(function (host, phone) sends(host, phone, ROMEO_BARE, nil, marker("received")); end));
		assert.is_false(quiet_after(function (host, phone)
			sends(host, phone, ROMEO_BARE, nil, "<composing xmlns='http://jabber.org/protocol/chatstates'/>");
		end));
		assert.is_false(quiet_after(function (host, phone)
			sends(host, phone, ROMEO_BARE, nil, "<received xmlns='urn:xmpp:receipts' id='x'/>");
		end));
	end);

	it("does not count what the tab's own session sent (a web client marks from the tab being closed)", function ()
		local world, host = setup();
		local tab, sub = host:subscribed_session("juliet", "web");
		sends(host, tab, ROMEO_BARE, nil, marker("displayed"));
		host:hibernate(tab);
		host:queue(tab, from(ROMEO, "hello"));
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("applies to a room the user wrote in, and to a private message through it", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone({ web_push_groupchat = "all" });
		sends(host, phone, ROOM, "hi all", nil, "groupchat");
		host:queue(tab, from(ROOM .. "/romeo", "hi juliet", nil, { type = "groupchat" }));
		answer_all(world);
		assert.equal(0, #world:pushes_for(sub));
		sends(host, phone, ROOM .. "/nurse", "psst", [[<x xmlns="http://jabber.org/protocol/muc#user"/>]]);
		host:queue(tab, from(ROOM .. "/nurse", "psst back", [[<x xmlns="http://jabber.org/protocol/muc#user"/>]]));
		assert.equal(0, #world:pushes_for(sub));
	end);

	it("a displayed marker from another client drops the push still waiting for that chat", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone();
		host:queue(tab, from(ROMEO, "one")); -- pushed at once, answered later
		host:queue(tab, from(ROMEO, "two")); -- waits for the first
		host:queue(tab, from(NURSE, "three")); -- waits too, another chat
		local first = world:last_push(sub);
		sends(host, phone, ROMEO_BARE, nil, marker("displayed"));
		-- The sender was asked to drop that chat's jobs for this subscription.
		assert.same({ account = JULIET, endpoint = sub.endpoint, conversation = ROMEO_BARE }, world.cancels[#world.cancels]);
		assert.equal("cancelled", first.final);
		world:advance(10);
		answer_all(world);
		world:advance(10);
		local pushes = world:pushes_for(sub);
		assert.equal(2, #pushes, "the first, then only the nurse's");
		assert.equal("nurse@example.org", pushes[2].job.conversation);
	end);

	it("a displayed update (XEP-0490) from another client drops the waiting push too", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone();
		host:queue(tab, from(ROMEO, "one"));
		host:queue(tab, from(ROMEO, "two"));
		answer_all(world);
		world.pep(world, host.host).publish("juliet", phone.full_jid, MDS, ROMEO_BARE,
			("<displayed xmlns='%s'><stanza-id xmlns='urn:xmpp:sid:0' by='%s' id='s1'/></displayed>"):format(MDS, JULIET));
		world:advance(10);
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("still rings a call at once, whatever waits or is quiet", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone();
		sends(host, phone, ROMEO_BARE, "talk later");
		host:queue(tab, from(NURSE, "one")); -- pushed
		host:queue(tab, from(NURSE, "two")); -- waits for it
		host:queue(tab, from(ROMEO, nil, CALL));
		local pushes = world:pushes_for(sub);
		assert.equal(2, #pushes);
		assert.equal(ROMEO_BARE, pushes[2].job.conversation);
		assert.equal("high", pushes[2].job.urgency);
	end);

	it("with web_push_grace = 0 is not quiet, but reading elsewhere still drops what waits", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone({ web_push_grace = 0 });
		sends(host, phone, ROMEO_BARE, "hi");
		host:queue(tab, from(ROMEO, "one"));
		assert.equal(1, #world:pushes_for(sub));
		host:queue(tab, from(ROMEO, "two"));
		sends(host, phone, ROMEO_BARE, nil, marker("displayed"));
		answer_all(world);
		world:advance(10);
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("costs nothing for accounts without subscriptions", function ()
		local world, host = setup();
		local plain = host:session("romeo", "desktop");
		sends(host, plain, JULIET, "hi"); -- reads romeo's subscriptions once
		local store = world:store(standin.HOST, "web_push");
		local reads = store.reads;
		for _ = 1, 10 do
			sends(host, plain, JULIET, "hi");
			sends(host, plain, JULIET, nil, marker("displayed"));
		end
		assert.equal(reads, store.reads);
		assert.same({}, world.cancels);
	end);
end);

-- WebKit's published description of a declarative push message (webkit.org, "Meet Declarative
-- Web Push"; the Push API's declarative push message parser): what a browser needs to show it by
-- itself. Returns nil or what is wrong.
local function declarative_problem(message)
	if math.type(message.web_push) ~= "integer" or message.web_push ~= 8030 then return "web_push is not 8030"; end
	local n = message.notification;
	if type(n) ~= "table" then return "no notification object"; end
	if type(n.title) ~= "string" or n.title == "" then return "no title"; end
	if type(n.navigate) ~= "string" or not n.navigate:match("^https?://[^/]+") then return "navigate is not an absolute URL"; end
	for _, field in ipairs({ "body", "lang", "tag", "dir" }) do
		if n[field] ~= nil and type(n[field]) ~= "string" then return field .. " is not a string"; end
	end
	if n.dir ~= nil and n.dir ~= "auto" and n.dir ~= "ltr" and n.dir ~= "rtl" then return "bad dir"; end
	if message.app_badge ~= nil and not (math.type(message.app_badge) == "integer" and message.app_badge >= 0) then
		return "app_badge is not an unsigned integer";
	end
	if message.mutable ~= nil and type(message.mutable) ~= "boolean" then return "mutable is not a boolean"; end
end

describe("declarative Web Push (web_push_client_url)", function ()
	local URL = "https://chat.example.org/";

	it("is not in the payload without web_push_client_url", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("hi"));
		local n = world:last_push(sub).notification;
		assert.is_nil(n.web_push);
		assert.is_nil(n.notification);
		assert.is_nil(n.app_badge);
	end);

	it("adds WebKit's members to DESIGN.md's, as the service worker would show them", function ()
		local world, host = setup({ web_push_client_url = URL });
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("hi"));
		local n = world:last_push(sub).notification;
		assert.is_nil(declarative_problem(n));
		assert.same({ account = JULIET, important = true, ["message-count"] = 1, ["last-message-body"] = "New Message!",
			web_push = 8030, app_badge = 1, mutable = true,
			notification = { title = JULIET, body = "New Message!", navigate = URL } }, n);
	end);

	it("names the sender and carries the body and its language when the options allow", function ()
		local world, host = setup({ web_push_client_url = URL, push_notification_with_sender = true, push_notification_with_body = true });
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("Bonsoir", nil, { ["xml:lang"] = "fr" }));
		local n = world:last_push(sub).notification;
		assert.is_nil(declarative_problem(n));
		assert.same({ title = ROMEO_BARE, body = "Bonsoir", navigate = URL, lang = "fr" }, n.notification);
		assert.equal(ROMEO, n["last-message-sender"]);
	end);

	it("shows something for a push without a stanza too", function ()
		local world, host = setup({ web_push_client_url = URL });
		local sub = host:subscribed_offline("juliet");
		host:fire("cloud-notify-ping", { user = "juliet" });
		local n = world:last_push(sub).notification;
		assert.is_nil(declarative_problem(n));
		assert.same({ title = JULIET, body = "New message", navigate = URL }, n.notification);
		assert.equal(0, n["message-count"]);
	end);

	it("counts what is unread in app_badge, until it is read elsewhere or the tab is back", function ()
		local world, host, tab, sub, phone = closed_tab_and_phone({ web_push_client_url = URL, web_push_min_interval = 0 });
		host:queue(tab, from(ROMEO, "one"));
		answer_all(world);
		host:queue(tab, from(NURSE, "two"));
		answer_all(world);
		host:queue(tab, from(ROMEO, "three"));
		answer_all(world);
		local pushes = world:pushes_for(sub);
		assert.same({ 1, 2, 3 }, { pushes[1].notification.app_badge, pushes[2].notification.app_badge, pushes[3].notification.app_badge });
		sends(host, phone, ROMEO_BARE, nil, marker("displayed"));
		host:queue(tab, from(NURSE, "four"));
		answer_all(world);
		assert.equal(2, world:last_push(sub).notification.app_badge, "romeo's two were read on the phone");
		host:resume(tab);
		host:hibernate(tab);
		host:queue(tab, from(NURSE, "five"));
		assert.equal(1, world:last_push(sub).notification.app_badge, "the tab came back: all read");
	end);

	it("stays within 3,000 bytes with a long body, cut in both places", function ()
		local world, host = setup({ web_push_client_url = URL, push_notification_with_body = true, push_notification_with_sender = true });
		local sub = host:subscribed_offline("juliet");
		local body = ("é€😀x"):rep(1500);
		host:offline("juliet", to_juliet(body));
		local push = world:last_push(sub);
		assert.truthy(push.json_size <= 3000, push.json_size);
		local n = push.notification;
		assert.is_nil(declarative_problem(n));
		assert.truthy(#n.notification.body < #body);
		assert.equal(n["last-message-body"], n.notification.body);
		assert.same(n, json.decode(push.plaintext));
	end);

	it("is checked against WebKit's description: a payload without navigate or title is not declarative", function ()
		assert.equal("navigate is not an absolute URL", declarative_problem({ web_push = 8030, notification = { title = "t" } }));
		assert.equal("no title", declarative_problem({ web_push = 8030, notification = { navigate = URL } }));
		assert.equal("web_push is not 8030", declarative_problem({ web_push = "8030", notification = { title = "t", navigate = URL } }));
		assert.equal("app_badge is not an unsigned integer", declarative_problem({ web_push = 8030, app_badge = -1,
			notification = { title = "t", navigate = URL } }));
	end);
end);
