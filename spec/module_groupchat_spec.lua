-- mod_web_push against a stand-in of Prosody: group chats. The user's own per-room settings
-- (XEP-0492 in their XEP-0402 bookmarks, read from mod_pep and followed through its events),
-- web_push_groupchat, and what counts as a mention (XEP-0372 references, XEP-0461 replies, the
-- nick learned from the room's self-presence as a whole word).
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";
local st = require "util.stanza";

local JULIET = standin.JULIET;
local setup = standin.setup;

local ROOM, OTHER_ROOM = "balcony@rooms.example", "crypt@rooms.example";
local BOOKMARKS = "urn:xmpp:bookmarks:1";
local NS1, NS0 = "urn:xmpp:notification-settings:1", "urn:xmpp:notification-settings:0";
local JULIET_TAB = JULIET .. "/web";

-- No pacing: every push goes at once, so a count of pushes is a count of decisions.
local UNPACED = { web_push_min_interval = 0, web_push_max_pushes_per_minute = 0 };

local function options(extra)
	local o = {};
	for k, v in pairs(UNPACED) do o[k] = v; end
	for k, v in pairs(extra or {}) do o[k] = v; end
	return o;
end

-- A closed tab: juliet's web session, subscribed, hibernated.
local function closed_tab(extra, world_options)
	local world, host = setup(options(extra), world_options);
	local session, sub = host:subscribed_session("juliet", "web");
	host:hibernate(session);
	return world, host, session, sub;
end

-- A message from `nick` in a room, as the room sends it to juliet's session.
local function from_room(room, nick, body, extra)
	local message = st.message({ from = room .. "/" .. nick, to = JULIET_TAB, type = "groupchat", id = "g" .. math.random(1e9) });
	if body then message:text_tag("body", body); end
	if extra then message:add_child(standin.parse(extra)); end
	return message;
end

-- Every job answered at once, as a quick push service would: one job out per subscription, so
-- without answers the next push would wait for the one before.
local function answer_all(world)
	for _ = 1, 100 do
		local open = false;
		for _, record in ipairs(world.all_jobs or {}) do
			if not record.final then
				open = true;
				world:answer(record, "delivered", { status = 201 });
			end
		end
		world:advance(0.01);
		if not open then return; end
	end
end

-- A closed tab's session gets a stanza (mod_smacks queues it), and what it pushes is answered.
local function queue(host, session, stanza)
	host:queue(session, stanza);
	answer_all(host.world);
end

local function pushes(world, sub)
	answer_all(world);
	return world:pushes_for(sub);
end

-- A bookmark of a room, published by one of juliet's clients.
local function bookmark(host, room, notify, nick)
	local xml = ("<conference xmlns='%s' autojoin='true'>%s<extensions>%s</extensions></conference>"):format(BOOKMARKS,
		nick and ("<nick>" .. nick .. "</nick>") or "", notify or "");
	return host.world:pep(host.host).publish("juliet", JULIET .. "/desktop", BOOKMARKS, room, xml);
end

-- The room's self-presence to juliet's session: her nick is `nick` (status codes added).
local function self_presence(host, session, room, nick, codes, attrs, item_nick)
	local presence = st.presence({ from = room .. "/" .. nick, type = attrs and attrs.type });
	presence:tag("x", { xmlns = "http://jabber.org/protocol/muc#user" })
		:tag("item", { affiliation = "member", role = "participant", nick = item_nick }):up();
	for _, code in ipairs(codes or { "110" }) do presence:tag("status", { code = code }):up(); end
	host:presence_to(session, presence);
end

describe("group chat messages, by default (web_push_groupchat = \"mentions\")", function ()
	it("push only when they mention the account's nick, and count the others", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "Juliet");
		for i = 1, 5 do queue(host, session, from_room(ROOM, "nurse", "chatter " .. i)); end
		assert.equal(0, #pushes(world, sub));
		queue(host, session, from_room(ROOM, "romeo", "Juliet, art thou there?"));
		local got = pushes(world, sub);
		assert.equal(1, #got);
		assert.equal(6, got[1].notification["message-count"], "the five counted ones and the mention");
		assert.equal(ROOM, got[1].job.conversation);
		-- The count starts again after a push.
		queue(host, session, from_room(ROOM, "nurse", "more chatter"));
		queue(host, session, from_room(ROOM, "romeo", "juliet?"));
		got = pushes(world, sub);
		assert.equal(2, #got);
		assert.equal(2, got[2].notification["message-count"]);
	end);

	local words = {
		{ "Juliet: hello", true }, { "hello juliet", true }, { "JULIET!", true }, { "(juliet)", true },
		{ "is that juliet's?", true }, { "julietta is here", false }, { "ajuliet", false }, { "juliet_bot said", false },
		{ "juliet2 is not her", false }, { "julietté", false }, { "éjuliet", false }, { "…juliet…", true },
		{ "«juliet»", true }, { "juliet😀", true }, { "juliet—there?", true }, { "nobody here", false },
		{ ("julietta "):rep(10) .. "and juliet", true },
		-- A body made to hold the nick inside other words many times is not searched to its end.
		{ ("julietta "):rep(20000) .. "and juliet", false },
	};
	for _, case in ipairs(words) do
		it(("%s the nick as a whole word in %q"):format(case[2] and "find" or "do not find", case[1]:sub(1, 40)), function ()
			local world, host, session, sub = closed_tab();
			self_presence(host, session, ROOM, "Juliet");
			queue(host, session, from_room(ROOM, "romeo", case[1]));
			assert.equal(case[2] and 1 or 0, #pushes(world, sub));
		end);
	end

	it("push for a XEP-0372 mention of the account's JID or of its occupant JID", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "J. Capulet");
		local function mention(uri)
			return ("<reference xmlns='urn:xmpp:reference:0' type='mention' uri='%s' begin='0' end='3'/>"):format(uri);
		end
		queue(host, session, from_room(ROOM, "romeo", "hey you", mention("xmpp:" .. JULIET)));
		queue(host, session, from_room(OTHER_ROOM, "romeo", "hey you", mention("xmpp:someone@example.org")));
		queue(host, session, from_room(ROOM, "romeo", "hey you", mention("xmpp:" .. ROOM .. "/J.%20Capulet")));
		queue(host, session, from_room(ROOM, "romeo", "hey you", [[<reference xmlns='urn:xmpp:reference:0' type='data'
			uri='xmpp:juliet@example.org'/>]]));
		assert.equal(2, #pushes(world, sub));
	end);

	it("push for a XEP-0461 reply to the account's message in the room", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "jc");
		queue(host, session, from_room(ROOM, "romeo", "indeed", ("<reply xmlns='urn:xmpp:reply:0' to='%s/jc' id='x1'/>"):format(ROOM)));
		queue(host, session, from_room(ROOM, "romeo", "indeed", ("<reply xmlns='urn:xmpp:reply:0' to='%s/nurse' id='x2'/>"):format(ROOM)));
		assert.equal(1, #pushes(world, sub));
	end);

	it("follow the nick the room names: a change (303) and a rewrite (210)", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "juliet");
		self_presence(host, session, ROOM, "juliet", { "110", "303" }, { type = "unavailable" }, "capulet");
		queue(host, session, from_room(ROOM, "romeo", "juliet?"));
		assert.equal(0, #pushes(world, sub), "the old nick");
		queue(host, session, from_room(ROOM, "romeo", "capulet?"));
		assert.equal(1, #pushes(world, sub), "the new nick");
		-- Joining another room whose service rewrites the nick asked for: the presence comes from the new one.
		self_presence(host, session, OTHER_ROOM, "juliet (2)", { "110", "210" });
		queue(host, session, from_room(OTHER_ROOM, "romeo", "capulet?"));
		queue(host, session, from_room(OTHER_ROOM, "romeo", "juliet (2): hi"));
		assert.equal(2, #pushes(world, sub));
	end);

	it("use the bookmark's nick until the room has named one", function ()
		local world, host, session, sub = closed_tab();
		bookmark(host, ROOM, nil, "jules");
		queue(host, session, from_room(ROOM, "romeo", "jules, come"));
		assert.equal(1, #pushes(world, sub));
		self_presence(host, session, ROOM, "capulet");
		queue(host, session, from_room(ROOM, "romeo", "jules, come"));
		assert.equal(1, #pushes(world, sub));
	end);

	it("never push the room's echo of the user's own message", function ()
		local world, host, session, sub = closed_tab({ web_push_groupchat = "all" });
		self_presence(host, session, ROOM, "juliet");
		queue(host, session, from_room(ROOM, "juliet", "I said juliet"));
		assert.equal(0, #pushes(world, sub));
	end);

	it("ignore presences that are not the user's own (no status 110), and learn nothing for accounts without push", function ()
		local world, host, session, sub = closed_tab();
		local presence = st.presence({ from = ROOM .. "/romeo" }):tag("x", { xmlns = "http://jabber.org/protocol/muc#user" }):up();
		host:presence_to(session, presence);
		queue(host, session, from_room(ROOM, "nurse", "romeo is here"));
		assert.equal(0, #pushes(world, sub));
		local plain = host:session("romeo", "desktop");
		local reads = world:store(standin.HOST, "web_push").reads;
		host:presence_to(plain, st.presence({ from = ROOM .. "/romeo" }));
		host:presence_to(plain, st.presence({ from = ROOM .. "/tybalt" }):tag("x", { xmlns = "http://jabber.org/protocol/muc#user" }):up());
		assert.equal(reads, world:store(standin.HOST, "web_push").reads, "other occupants' presences cost no lookup");
	end);

	it("keep the nicks learned across a module reload", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "capulet");
		host = assert(host:reload());
		queue(host, session, from_room(ROOM, "romeo", "capulet!"));
		assert.equal(1, #pushes(world, sub));
	end);
end);

describe("web_push_groupchat", function ()
	it("= \"all\" pushes every message of a room", function ()
		local world, host, session, sub = closed_tab({ web_push_groupchat = "all" });
		queue(host, session, from_room(ROOM, "romeo", "one"));
		queue(host, session, from_room(ROOM, "romeo", "two"));
		assert.equal(2, #pushes(world, sub));
	end);

	it("= \"none\" pushes no message of a room, mentions included, and counts none", function ()
		local world, host, session, sub = closed_tab({ web_push_groupchat = "none" });
		self_presence(host, session, ROOM, "juliet");
		queue(host, session, from_room(ROOM, "romeo", "juliet!"));
		assert.equal(0, #pushes(world, sub));
		queue(host, session, standin.message("romeo@montague.lit/orchard", JULIET_TAB, "a chat"));
		assert.equal(1, pushes(world, sub)[1].notification["message-count"]);
	end);

	it("still pushes private messages through a room, whatever it is", function ()
		for _, mode in ipairs({ "none", "mentions" }) do
			local world, host, session, sub = closed_tab({ web_push_groupchat = mode });
			queue(host, session, standin.message(ROOM .. "/romeo", JULIET_TAB, "psst", [[<x xmlns="http://jabber.org/protocol/muc#user"/>]]));
			local got = pushes(world, sub);
			assert.equal(1, #got);
			assert.equal(ROOM .. "/romeo", got[1].job.conversation);
		end
	end);

	it("warns about an unknown value and uses \"mentions\"", function ()
		local world, host, session, sub = closed_tab({ web_push_groupchat = "some" });
		assert.equal(1, #world:log_lines("web_push_groupchat", "warn"));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(0, #pushes(world, sub));
	end);
end);

describe("the user's settings in their bookmarks (XEP-0492)", function ()
	it("override web_push_groupchat per room: never on one, always on another", function ()
		local world, host, session, sub = closed_tab();
		self_presence(host, session, ROOM, "juliet");
		self_presence(host, session, OTHER_ROOM, "juliet");
		bookmark(host, ROOM, ("<notify xmlns='%s'><never/></notify>"):format(NS1));
		bookmark(host, OTHER_ROOM, ("<notify xmlns='%s'><always/></notify>"):format(NS1));
		queue(host, session, from_room(ROOM, "romeo", "juliet, look!"));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(0, #pushes(world, sub), "never: not even a mention");
		queue(host, session, from_room(OTHER_ROOM, "tybalt", "plain one"));
		queue(host, session, from_room(OTHER_ROOM, "tybalt", "plain two"));
		local got = pushes(world, sub);
		assert.equal(2, #got, "always: every message");
		assert.equal(1, got[1].notification["message-count"], "never's messages are not counted either");
		-- A private message through a room set to never: held back too.
		queue(host, session, standin.message(ROOM .. "/romeo", JULIET_TAB, "psst", [[<x xmlns="http://jabber.org/protocol/muc#user"/>]]));
		assert.equal(2, #pushes(world, sub));
	end);

	-- (the notify element's children, the setting a web browser gets)
	local precedence = {
		{ "the fallback", "<always/>", "always" },
		{ "category client over the fallback", "<never/><always identity-category='client'/>", "always" },
		{ "client/web over category client", "<never identity-category='client' identity-type='web'/><always identity-category='client'/>", "never" },
		{ "client/web over the fallback, in any order", "<always/><on-mention identity-category='client' identity-type='web'/>", "on-mention" },
		{ "other clients' elements do not apply", "<never identity-category='client' identity-type='pc'/><always/>", "always" },
		{ "other categories do not apply", "<never identity-category='gateway'/><always/>", "always" },
		{ "a type without a category does not apply", "<never identity-type='web'/><always/>", "always" },
		{ "only elements for others: web_push_groupchat", "<always identity-category='client' identity-type='phone'/>", nil },
		{ "conflicting elements: the quieter", "<always/><never/>", "never" },
		{ "an advanced child changes nothing", "<always><advanced><x xmlns='custom:1'/></advanced></always>", "always" },
	};
	for _, case in ipairs(precedence) do
		it(("pick the element for a web browser: %s"):format(case[1]), function ()
			local world, host, session, sub = closed_tab();
			self_presence(host, session, ROOM, "juliet");
			bookmark(host, ROOM, ("<notify xmlns='%s'>%s</notify>"):format(NS1, case[2]));
			queue(host, session, from_room(ROOM, "romeo", "plain"));
			queue(host, session, from_room(ROOM, "romeo", "juliet!"));
			local expected = ({ always = 2, ["on-mention"] = 1, never = 0 })[case[3] or "on-mention"];
			assert.equal(expected, #pushes(world, sub));
		end);
	end

	it("read 0.1.0's namespace too (client-type), and prefer 0.2.0's where both say something", function ()
		local world, host, session, sub = closed_tab();
		bookmark(host, ROOM, ("<notify xmlns='%s'><never client-type='web'/><always/></notify>"):format(NS0));
		bookmark(host, OTHER_ROOM, ("<notify xmlns='%s'><never/></notify><notify xmlns='%s'><always/></notify>"):format(NS0, NS1));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(0, #pushes(world, sub));
		queue(host, session, from_room(OTHER_ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub));
	end);

	it("are read once, at the first group chat push, and never per push", function ()
		local world, host, session, sub = closed_tab();
		bookmark(host, ROOM, ("<notify xmlns='%s'><always/></notify>"):format(NS1));
		local pep = world:pep(standin.HOST);
		queue(host, session, standin.message("romeo@montague.lit/orchard", JULIET_TAB, "a chat"));
		assert.equal(0, pep.reads, "a chat message needs no bookmarks");
		for i = 1, 20 do queue(host, session, from_room(ROOM, "romeo", "message " .. i)); end
		assert.equal(21, #pushes(world, sub));
		assert.equal(1, pep.reads);
	end);

	it("follow what the user's clients publish, retract or delete, from the next push on", function ()
		local world, host, session, sub = closed_tab();
		local pep = world:pep(standin.HOST);
		queue(host, session, from_room(ROOM, "romeo", "plain")); -- read now: nothing set
		assert.equal(0, #pushes(world, sub));
		bookmark(host, ROOM, ("<notify xmlns='%s'><always/></notify>"):format(NS1));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub), "published");
		pep.retract("juliet", JULIET .. "/desktop", BOOKMARKS, ROOM);
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub), "retracted");
		bookmark(host, ROOM, ("<notify xmlns='%s'><always/></notify>"):format(NS1));
		pep.delete("juliet", JULIET .. "/desktop", BOOKMARKS);
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub), "node deleted");
		assert.equal(1, pep.reads);
	end);

	it("are followed on a PEP service mod_pep made again after dropping it from its cache", function ()
		local world, host, session, sub = closed_tab();
		local pep = world:pep(standin.HOST);
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		pep.evict("juliet");
		bookmark(host, ROOM, ("<notify xmlns='%s'><always/></notify>"):format(NS1));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub));
	end);

	it("cost nothing for accounts without subscriptions", function ()
		local world, host = setup(options());
		local pep = world:pep(standin.HOST);
		local plain = host:session("romeo", "desktop");
		host:hibernate(plain);
		host:queue(plain, st.message({ from = ROOM .. "/x", to = "romeo@example.org/desktop", type = "groupchat" }):text_tag("body", "hi"));
		host:fire("message/bare/groupchat", { origin = {}, stanza = st.message({ from = ROOM .. "/x", to = "romeo@example.org",
			type = "groupchat" }):text_tag("body", "hi") });
		assert.equal(0, pep.reads);
		assert.equal(0, world:job_count());
	end);

	it("are left alone without mod_pep: web_push_groupchat decides", function ()
		local world, host, session, sub = closed_tab({ web_push_groupchat = "all" }, { no_pep = true });
		assert.equal(1, #world:log_lines("No mod_pep", "warn"));
		queue(host, session, from_room(ROOM, "romeo", "plain"));
		assert.equal(1, #pushes(world, sub));
	end);
end);
