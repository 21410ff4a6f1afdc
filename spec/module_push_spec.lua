-- mod_web_push against a stand-in of Prosody: when it pushes (mod_cloud_notify's events), at most
-- once per stanza and subscription, what the notification says, and the request's headers.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";
local st = require "util.stanza";
local json = require "util.json";

local HOST, JULIET, ROMEO = standin.HOST, standin.JULIET, standin.ROMEO;
local setup, to_juliet = standin.setup, standin.to_juliet;
local OMEMO = [[<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="1"><iv>AAAA</iv></header><payload>AAAA</payload></encrypted>]];
local CALL = [[<propose xmlns="urn:xmpp:jingle-message:0" id="c1"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"/></propose>]];
local CHAT_STATE = [[<active xmlns="http://jabber.org/protocol/chatstates"/>]];

local function offline_juliet(host, count)
	return host:subscribed_offline("juliet", count);
end

describe("pushes for offline messages", function ()
	it("give exactly one push, with the notification and headers of DESIGN.md", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:offline("juliet", to_juliet("secret words"));
		local pushes = world:pushes_for(sub);
		assert.equal(1, #pushes);
		assert.same({ account = JULIET, important = true, ["message-count"] = 1, ["last-message-body"] = "New Message!" },
			pushes[1].notification);
		local job = pushes[1].job;
		assert.equal(86400, job.ttl);
		assert.equal("high", job.urgency);
		-- The sender derives Topic and tag from the subscription and the conversation.
		assert.equal(JULIET, job.account);
		assert.equal("romeo@montague.lit", job.conversation);
		assert.same({}, world:leaks({ "secret words", sub.p256dh, sub.auth }));
	end);

	it("reach every subscription of the account, and none of another account", function ()
		local world, host = setup();
		local _, subs = offline_juliet(host, 3);
		local romeo_sub = standin.subscription();
		local romeo = host:session("romeo");
		host:enable(romeo, romeo_sub);
		host:close(romeo);
		host:offline("juliet", to_juliet("hi"));
		for _, sub in ipairs(subs) do assert.equal(1, #world:pushes_for(sub)); end
		assert.equal(0, #world:pushes_for(romeo_sub));
	end);

	it("cost no storage read after the first, for accounts without subscriptions too", function ()
		local world, host = setup();
		local store = world:store(HOST, "web_push");
		host:offline("nobody", to_juliet("x", nil, { to = "nobody@example.org" }));
		local reads = store.reads;
		for _ = 1, 5 do host:offline("nobody", to_juliet("x", nil, { to = "nobody@example.org" })); end
		assert.equal(reads, store.reads);
		assert.equal(0, world:job_count());
	end);

	it("leave the event to mod_offline (never handled here)", function ()
		local _, host = setup();
		offline_juliet(host);
		assert.is_nil(host:offline("juliet", to_juliet("hi")));
	end);

	it("are not sent to subscriptions of another VirtualHost", function ()
		local world = standin.world();
		world:virtual_host("a.example", {});
		world:virtual_host("b.example", {});
		local a = assert(world:load("a.example"));
		local b = assert(world:load("b.example"));
		local session = a:session("juliet");
		local sub = standin.subscription();
		a:enable(session, sub);
		a:close(session);
		b:offline("juliet", standin.message(ROMEO, "juliet@b.example", "hi"));
		assert.equal(0, #world:pushes_for(sub));
		a:offline("juliet", standin.message(ROMEO, "juliet@a.example", "hi"));
		assert.equal(1, #world:pushes_for(sub));
		assert.equal(1, #a:sender().jobs);
		assert.equal(0, #b:sender().jobs);
	end);
end);

describe("what is important", function ()
	local cases = {
		{ "a body", { "hello" }, true },
		{ "an empty body", { "" }, false },
		{ "a chat state only", { nil, CHAT_STATE }, false },
		{ "OMEMO", { nil, OMEMO }, true },
		{ "OMEMO 0.8+", { nil, [[<encrypted xmlns="urn:xmpp:omemo:2"><payload>AA</payload></encrypted>]] }, true },
		{ "legacy OMEMO namespace", { nil, [[<encrypted xmlns="urn:xmpp:omemo:0"><payload>AA</payload></encrypted>]] }, true },
		{ "PGP", { nil, [[<x xmlns="jabber:x:encrypted">AAAA</x>]] }, true },
		{ "OX", { nil, [[<openpgp xmlns="urn:xmpp:openpgp:0">AAAA</openpgp>]] }, true },
		{ "a call proposal", { nil, CALL }, true },
		{ "a headline with a body", { "news", nil, { type = "headline" } }, false },
		{ "an error with a body", { "bounced", nil, { type = "error" } }, false },
		{ "a groupchat subject", { nil, [[<subject>topic</subject>]], { type = "groupchat" } }, false },
		{ "a groupchat message", { "hi all", nil, { type = "groupchat" } }, true },
		{ "a carbon of a message received elsewhere", { nil,
			[[<received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"
				from="romeo@montague.lit/orchard" to="juliet@example.org/other" type="chat"><body>hi</body></message></forwarded></received>]] }, true },
		{ "a carbon of a message the user sent", { nil,
			[[<sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"
				from="juliet@example.org/other" to="romeo@montague.lit" type="chat"><body>hi</body></message></forwarded></sent>]] }, false },
	};
	for _, case in ipairs(cases) do
		local body, extra, attrs = case[2][1], case[2][2], case[2][3];
		-- Group chat messages push here whether or not they mention the user.
		local groupchat = attrs and attrs.type == "groupchat" and "all" or nil;
		it(("%s is %s"):format(case[1], case[3] and "important" or "not important"), function ()
			local world, host = setup({ web_push_important_only = false, web_push_groupchat = groupchat });
			local sub = offline_juliet(host);
			host:offline("juliet", to_juliet(body, extra, attrs));
			local pushes = world:pushes_for(sub);
			assert.equal(1, #pushes);
			assert.equal(case[3], pushes[1].notification.important);
			assert.equal(case[3] and "high" or "normal", pushes[1].job.urgency);
			assert.equal(case[3] and "New Message!" or nil, pushes[1].notification["last-message-body"]);
		end);
		if not case[3] then
			it(("%s is not pushed with web_push_important_only (the default)"):format(case[1]), function ()
				local world, host = setup();
				offline_juliet(host);
				host:offline("juliet", to_juliet(body, extra, attrs));
				assert.equal(0, world:job_count());
			end);
		end
	end

	it("never pushes for presences or IQs", function ()
		local world, host = setup({ web_push_important_only = false });
		local session = host:session("juliet");
		host:enable(session, standin.subscription());
		host:hibernate(session, { st.presence({ from = ROMEO }), st.iq({ type = "get", id = "p", from = "example.org" }) });
		assert.equal(0, world:job_count());
	end);
end);

describe("the notification", function ()
	local function one_push(options, message)
		local world, host = setup(options);
		local sub = offline_juliet(host);
		host:offline("juliet", message or to_juliet("what she said"));
		local pushes = world:pushes_for(sub);
		assert.equal(1, #pushes);
		return pushes[1].notification, pushes[1], world;
	end

	it("names the sender with push_notification_with_sender", function ()
		local n = one_push({ push_notification_with_sender = true });
		assert.equal(ROMEO, n["last-message-sender"]);
		assert.equal("New Message!", n["last-message-body"]);
	end);

	it("carries the real body with push_notification_with_body", function ()
		local n = one_push({ push_notification_with_body = true });
		assert.equal("what she said", n["last-message-body"]);
	end);

	it("carries push_notification_important_body otherwise", function ()
		local n = one_push({ push_notification_important_body = "Something came in" });
		assert.equal("Something came in", n["last-message-body"]);
	end);

	it("carries the important body for an important stanza without one, even with push_notification_with_body", function ()
		local n = one_push({ push_notification_with_body = true }, to_juliet(nil, OMEMO));
		assert.equal("New Message!", n["last-message-body"]);
	end);

	it("names the sender of a received carbon, not the wrapper", function ()
		local n = one_push({ push_notification_with_sender = true, push_notification_with_body = true }, to_juliet(nil,
			[[<received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"
				from="nurse@example.org/x" to="juliet@example.org/other" type="chat"><body>from the nurse</body></message></forwarded></received>]],
			{ from = JULIET }));
		assert.equal("nurse@example.org/x", n["last-message-sender"]);
		assert.equal("from the nurse", n["last-message-body"]);
	end);

	local function check_cut(body)
		local n, push = one_push({ push_notification_with_body = true, push_notification_with_sender = true }, to_juliet(body));
		local cut = n["last-message-body"];
		assert.truthy(push.json_size <= 3000, "JSON of " .. push.json_size .. " bytes");
		assert.truthy(#cut < #body);
		local ellipsis = "\226\128\166";
		assert.equal(ellipsis, cut:sub(-3));
		local kept = cut:sub(1, -4);
		assert.equal(kept, body:sub(1, #kept));
		assert.truthy(utf8.len(kept), "whole characters");
		assert.truthy(push.json_size > 2900, "cut no more than needed: " .. push.json_size);
		return n;
	end

	it("cuts a long body at a character boundary so the JSON stays within 3,000 bytes", function ()
		check_cut(("é€😀x"):rep(1500));
		check_cut(("a"):rep(5000));
		check_cut(("€"):rep(2000));
	end);

	it("cuts a body full of characters JSON escapes", function ()
		local n = check_cut(('"\\\t\n'):rep(2000));
		assert.is_string(n["last-message-body"]);
	end);

	it("leaves a body that fits alone", function ()
		local body = ("é"):rep(1000); -- 2,000 bytes
		local n = one_push({ push_notification_with_body = true }, to_juliet(body));
		assert.equal(body, n["last-message-body"]);
	end);
end);

describe("the request", function ()
	-- The sender keys Topic and the payload's tag by subscription and conversation.
	it("names the conversation: the peer for a chat, the room for a group chat, the occupant in a room, none for a ping", function ()
		local world, host = setup({ web_push_min_interval = 0, web_push_max_pushes_per_minute = 0, web_push_groupchat = "all" });
		local sub = offline_juliet(host);
		local function conversation_of(stanza)
			host:offline("juliet", stanza);
			local push = world:last_push(sub);
			world:answer(push, "delivered", { status = 201 });
			world:advance(1);
			return push.job.conversation;
		end
		assert.equal("romeo@montague.lit", conversation_of(to_juliet("a")));
		assert.equal("room@muc.example", conversation_of(standin.message("room@muc.example/nick", JULIET, "hi all", nil,
			{ type = "groupchat" })));
		assert.equal("room@muc.example/nick", conversation_of(standin.message("room@muc.example/nick", JULIET, "psst",
			[[<x xmlns="http://jabber.org/protocol/muc#user"/>]])));
		assert.equal("nurse@example.org", conversation_of(to_juliet(nil, [[<received xmlns="urn:xmpp:carbons:2"><forwarded
			xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="nurse@example.org/x" to="juliet@example.org/other"
			type="chat"><body>hi</body></message></forwarded></received>]], { from = JULIET })));
		host:fire("cloud-notify-ping", { user = "juliet" });
		local ping = world:last_push(sub);
		assert.is_nil(ping.job.conversation);
		assert.equal(JULIET, ping.job.account);
	end);

	it("has the configured TTL", function ()
		local world, host = setup({ web_push_ttl = 600 });
		local sub = offline_juliet(host);
		host:offline("juliet", to_juliet("a"));
		assert.equal(600, world:pushes_for(sub)[1].job.ttl);
	end);
end);

describe("MAM", function ()
	it("pushes a device that has no session while another of the account is online", function ()
		local world, host = setup();
		local phone, phone_sub = host:subscribed_session("juliet", "phone");
		host:close(phone);
		local _, desktop_sub = host:subscribed_session("juliet", "desktop");
		host:archived("juliet", to_juliet("for every device"), "a1");
		assert.equal(1, #world:pushes_for(phone_sub));
		assert.equal(0, #world:pushes_for(desktop_sub));
	end);

	it("leaves subscriptions of hibernating sessions to the smacks events", function ()
		local world, host = setup();
		local phone, sub = host:subscribed_session("juliet", "phone");
		host:hibernate(phone);
		host:archived("juliet", to_juliet("x"), "a1");
		assert.equal(0, #world:pushes_for(sub));
	end);

	it("pushes calls to every subscription, live sessions included", function ()
		local world, host = setup();
		local _, sub = host:subscribed_session("juliet", "desktop");
		host:archived("juliet", to_juliet(nil, CALL), "a1");
		local pushes = world:pushes_for(sub);
		assert.equal(1, #pushes);
		assert.equal("high", pushes[1].job.urgency);
	end);

	it("does nothing for an account without sessions (the offline event does) or for what the user sent", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:archived("juliet", to_juliet("x"), "a1");
		assert.equal(0, #world:pushes_for(sub));
		host:session("juliet", "desktop");
		host:archived("juliet", standin.message(JULIET .. "/desktop", "romeo@montague.lit", "mine"), "a2");
		host:archived("juliet", standin.message(ROMEO, "juliet@elsewhere.example", "not ours"), "a3");
		assert.equal(0, #world:pushes_for(sub));
	end);
end);

describe("at most once", function ()
	it("for one stanza seen by MAM (its copy) and then delivered offline (with the archive id)", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:session("juliet", "desktop"); -- MAM pushes only when the account has a session
		local message = to_juliet("once");
		host:archived("juliet", st.clone(message), "arch-1");
		host:offline("juliet", standin.with_stanza_id(message, JULIET, "arch-1"));
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("by archive id, for at least the last 2,048 ids, in bounded memory", function ()
		local world, host = setup({ web_push_min_interval = 0, web_push_max_pushes_per_minute = 0 });
		offline_juliet(host); -- the world's only subscription: every job is one of its pushes
		local answered = 0;
		local function send(id)
			host:offline("juliet", standin.with_stanza_id(to_juliet("hi"), JULIET, id));
			for i = answered + 1, world:job_count() do
				world:answer(world.all_jobs[i], "delivered", { status = 201 });
			end
			answered = world:job_count();
		end
		for i = 1, 3000 do send("id" .. i); end
		assert.equal(3000, world:job_count());
		for i = 3000 - 2047, 3000 do send("id" .. i); end -- the latest 2,048 again: nothing
		assert.equal(3000, world:job_count());
		for i = 3001, 8000 do send("id" .. i); end
		send("id1"); -- long forgotten
		assert.equal(8001, world:job_count());
	end);

	it("for the same stanza object through several events", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		local message = to_juliet("once");
		host:offline("juliet", message);
		world:advance(60);
		host:offline("juliet", message);
		host:fire("message/bare/groupchat", { origin = {}, stanza = message });
		world:advance(60);
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("for stanzas of a hibernated session that later expire into offline storage", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session);
		local queued = host:queue(session, to_juliet("one"));
		local later = host:queue(session, to_juliet("two")); -- covered by the first push
		world:advance(5);
		-- mod_smacks hands its queued copies to mod_offline when the session ends.
		host:offline("juliet", queued);
		host:offline("juliet", later);
		world:advance(60);
		assert.equal(1, #world:pushes_for(sub));
	end);
end);

describe("bare groupchat messages and pings", function ()
	it("push a groupchat message to the bare JID, not its subject", function ()
		local world, host = setup({ web_push_groupchat = "all" });
		local sub = offline_juliet(host);
		host:fire("message/bare/groupchat", { origin = {}, stanza = standin.message("room@muc.example/nick", JULIET, nil,
			"<subject>new topic</subject>", { type = "groupchat" }) });
		assert.equal(0, #world:pushes_for(sub));
		host:fire("message/bare/groupchat", { origin = {}, stanza = standin.message("room@muc.example/nick", JULIET, "hello room",
			nil, { type = "groupchat" }) });
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("answer cloud-notify-ping with account and message-count only, at low urgency, to each subscription", function ()
		local world, host = setup();
		local _, subs = offline_juliet(host, 2);
		host:fire("cloud-notify-ping", { user = "juliet" });
		for _, sub in ipairs(subs) do
			local pushes = world:pushes_for(sub);
			assert.equal(1, #pushes);
			assert.same({ account = JULIET, ["message-count"] = 0 }, pushes[1].notification);
			assert.equal("low", pushes[1].job.urgency);
		end
		host:fire("cloud-notify-ping", { user = "nobody" });
		host:fire("cloud-notify-ping", {});
		assert.equal(2, world:job_count());
	end);
end);

describe("smacks hibernation", function ()
	it("pushes the unacked queue's important stanzas once, at hibernation start", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session, { to_juliet("one"), st.presence({ from = ROMEO }), to_juliet("two") });
		local pushes = world:pushes_for(sub);
		assert.equal(1, #pushes);
		assert.equal(2, pushes[1].notification["message-count"]);
	end);

	it("does not push for a hibernation with nothing important queued", function ()
		local world, host = setup();
		local session = host:session("juliet");
		host:enable(session, standin.subscription());
		host:hibernate(session, { to_juliet(nil, CHAT_STATE) });
		assert.equal(0, world:job_count());
	end);

	it("pushes the first important stanza queued while hibernating at once, and what follows coalesced", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session);
		host:queue(session, to_juliet("are you there?"));
		assert.equal(1, #world:pushes_for(sub));
		world:answer(world:pushes_for(sub)[1], "delivered", { status = 201 });
		for _ = 1, 4 do host:queue(session, to_juliet("burst")); end
		world:advance(5);
		local pushes = world:pushes_for(sub);
		assert.equal(2, #pushes, "the burst is one follow-up push");
		assert.equal(4, pushes[2].notification["message-count"]);
		world:answer(pushes[2], "delivered", { status = 201 });
		-- Minutes later, in the same hibernation: pushed again.
		world:advance(300);
		host:queue(session, to_juliet("still there?"));
		assert.equal(3, #world:pushes_for(sub));
	end);

	it("may push one unimportant stanza before anything else, and important ones always", function ()
		local world, host = setup({ web_push_important_only = false });
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session);
		host:queue(session, to_juliet(nil, CHAT_STATE));
		host:queue(session, to_juliet(nil, CHAT_STATE));
		world:advance(5);
		world:answer(world:pushes_for(sub)[1], "delivered", { status = 201 });
		host:queue(session, to_juliet("important"));
		world:advance(5);
		world:answer(world:pushes_for(sub)[2], "delivered", { status = 201 });
		host:queue(session, to_juliet(nil, CHAT_STATE));
		world:advance(5);
		host:queue(session, to_juliet("more"));
		world:advance(5);
		local pushes = world:pushes_for(sub);
		assert.equal(3, #pushes);
		assert.is_false(pushes[1].notification.important);
		assert.is_true(pushes[2].notification.important);
		assert.is_true(pushes[3].notification.important);
		assert.equal(1, pushes[3].notification["message-count"]);
	end);

	it("pushes only the subscription tied to the hibernating session", function ()
		local world, host = setup();
		local phone, phone_sub = host:subscribed_session("juliet", "phone");
		local _, laptop_sub = host:subscribed_session("juliet", "laptop");
		host:hibernate(phone);
		host:queue(phone, to_juliet("to the phone"));
		assert.equal(1, #world:pushes_for(phone_sub));
		assert.equal(0, #world:pushes_for(laptop_sub));
	end);

	it("ignores sessions without push", function ()
		local world, host = setup();
		offline_juliet(host);
		local session = host:session("juliet", "plain");
		host:hibernate(session, { to_juliet("x") });
		host:queue(session, to_juliet("y"));
		assert.equal(0, world:job_count());
	end);
end);

describe("delayed acks", function ()
	it("give one push for a burst, a moment later, counting its messages", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		local a, b, c = to_juliet("a"), to_juliet("b"), to_juliet("c");
		host:ack_delayed(session, a);
		host:ack_delayed(session, b);
		host:ack_delayed(session, nil, { a, b, c }); -- the whole queue, a and b again
		assert.equal(0, world:job_count());
		world:advance(1.5);
		local pushes = world:pushes_for(sub);
		assert.equal(1, #pushes);
		assert.equal(3, pushes[1].notification["message-count"]);
	end);

	it("drop the burst when the session ends first", function ()
		local world, host = setup();
		local session = host:session("juliet");
		host:enable(session, standin.subscription());
		host:ack_delayed(session, to_juliet("a"));
		host:close(session);
		world:advance(5);
		assert.equal(0, world:job_count());
	end);
end);

describe("web_push/push", function ()
	it("lets a handler veto a push", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host.api:hook("web_push/push", function (event)
			assert.equal("juliet", event.username);
			assert.equal(sub.endpoint, event.endpoint);
			assert.is_true(event.important);
			event.reason = "not today";
			return true;
		end);
		host:offline("juliet", to_juliet("x"));
		assert.equal(0, world:job_count());
		assert.equal(1, #world:log_lines("not today"));
	end);

	it("lets a handler amend the payload, still within the size limit", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host.api:hook("web_push/push", function (event)
			event.payload.room = "balcony";
			event.payload["last-message-body"] = ("x"):rep(5000);
		end);
		host:offline("juliet", to_juliet("x"));
		local push = world:pushes_for(sub)[1];
		assert.equal("balcony", push.notification.room);
		assert.truthy(push.json_size <= 3000);
	end);
end);

describe("hibernation timeouts", function ()
	for _, style in ipairs({ "0.12", "13", "13-standin" }) do
		local function available()
			if style ~= "13" then return true; end
			local f = io.open(standin.PROSODY13_WATCHDOG);
			if f then f:close(); return true; end
		end
		describe("with util.watchdog of " .. style, function ()
			local function world_with(options)
				if not available() then return nil; end
				return setup(options or { push_max_hibernation_timeout = 3600 }, { watchdog = style });
			end

			it("are extended for push-enabled sessions until the first important push", function ()
				local world, host = world_with();
				if not world then return pending("Prosody 13 is not unpacked in .cache"); end
				local session = host:session("juliet");
				host:enable(session, standin.subscription());
				host:hibernate(session, {}, 600);
				world:advance(1200);
				assert.is_nil(session.expired_at);
				host:queue(session, to_juliet("wake up"));
				local pushed_at = world.clock;
				world:advance(700);
				assert.truthy(session.expired_at, "expired after the original timeout from the push");
				assert.truthy(session.expired_at - pushed_at >= 600 and session.expired_at - pushed_at <= 602);
				assert.is_nil(session.stray_watchdogs);
			end);

			it("end at push_max_hibernation_timeout without a push", function ()
				local world, host = world_with();
				if not world then return pending("Prosody 13 is not unpacked in .cache"); end
				local session = host:session("juliet");
				host:enable(session, standin.subscription());
				host:hibernate(session, {}, 600);
				world:advance(3500);
				assert.is_nil(session.expired_at);
				world:advance(200);
				assert.truthy(session.expired_at);
				assert.is_nil(session.stray_watchdogs);
			end);

			it("are left alone for sessions without push, or when already longer", function ()
				local world, host = world_with();
				if not world then return pending("Prosody 13 is not unpacked in .cache"); end
				local plain = host:session("juliet", "plain");
				host:hibernate(plain, {}, 600);
				local long = host:session("juliet", "long");
				host:enable(long, standin.subscription());
				host:hibernate(long, {}, 7200);
				world:advance(700);
				assert.truthy(plain.expired_at);
				world:advance(6000);
				assert.is_nil(long.expired_at);
				world:advance(600);
				assert.truthy(long.expired_at);
			end);

			it("go back to the original when the subscription is disabled or the module unloaded", function ()
				local world, host = world_with();
				if not world then return pending("Prosody 13 is not unpacked in .cache"); end
				local a, b = host:session("juliet", "a"), host:session("juliet", "b");
				local sub_a, sub_b = standin.subscription(), standin.subscription();
				host:enable(a, sub_a);
				host:enable(b, sub_b);
				host:hibernate(a, {}, 600);
				host:hibernate(b, {}, 600);
				world:advance(100);
				host:disable(host:session("juliet", "c"), sub_a.endpoint);
				host:unload();
				world:advance(620);
				assert.truthy(a.expired_at);
				assert.truthy(b.expired_at);
				assert.is_nil(a.stray_watchdogs);
				assert.is_nil(b.stray_watchdogs);
			end);

			it("leave a watchdog alone that another module (mod_cloud_notify) replaced", function ()
				local world, host = world_with();
				if not world then return pending("Prosody 13 is not unpacked in .cache"); end
				local session = host:session("juliet");
				host:enable(session, standin.subscription());
				host:hibernate(session, {}, 600);
				-- As mod_cloud_notify does: cancel the current watchdog, put its own in.
				session.hibernating_watchdog:cancel();
				local theirs = world:watchdog_module().new(5000, function () session.theirs_fired = world.clock; end);
				session.hibernating_watchdog = theirs;
				host:queue(session, to_juliet("x")); -- our first push would restore ours
				assert.equal(theirs, session.hibernating_watchdog);
				world:advance(5100);
				assert.truthy(session.theirs_fired);
			end);
		end);
	end
end);

describe("payload JSON", function ()
	it("is what util.json reads back", function ()
		local world, host = setup({ push_notification_with_body = true, push_notification_with_sender = true });
		local sub = offline_juliet(host);
		host:offline("juliet", to_juliet('quote " backslash \\ newline \n tab \t unicode é€😀'));
		local push = world:pushes_for(sub)[1];
		assert.equal('quote " backslash \\ newline \n tab \t unicode é€😀', push.notification["last-message-body"]);
		assert.same(push.notification, json.decode(json.encode(push.notification)));
	end);
end);
