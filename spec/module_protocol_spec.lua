-- mod_web_push against a stand-in of Prosody: loading, the VAPID key, discovery, enable and
-- disable with every documented error, the device cap, storage failures, prosodyctl.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";
local st = require "util.stanza";

local NS, HOST = standin.NS, standin.HOST;
local loaded = standin.setup;

local function condition_of(answer)
	local _, condition, text = standin.stanza_error(answer);
	return condition, text;
end

describe("mod_web_push loading", function ()
	it("loads its native library from its own directory", function ()
		local world = loaded();
		assert.same({ path = "build/mod_web_push/web_push.so", symbol = "luaopen_web_push" }, world.loadlib_calls[1]);
		assert.equal(1, #world.senders);
		assert.equal(1, world:open_watchers());
	end);

	it("fails to load, adding no hook, when the native library is missing", function ()
		local world = standin.world();
		world.native_missing = true;
		world:virtual_host(HOST);
		local handle, err, api = world:load(HOST);
		assert.is_nil(handle);
		assert.truthy(tostring(err):find("web_push.so", 1, true));
		assert.same({}, api.hooks);
		assert.equal(0, #world.senders);
	end);

	it("refuses to load when the stored key cannot be read, and makes no new one", function ()
		local world = standin.world();
		world:virtual_host(HOST);
		world:store(HOST, "web_push_vapid").fail_reads = true;
		local handle, err, api = world:load(HOST);
		assert.is_nil(handle);
		assert.truthy(tostring(err):find("VAPID key", 1, true));
		assert.same({}, api.hooks);
		assert.equal(0, world:store(HOST, "web_push_vapid").writes);
	end);

	it("refuses a vapid subject that push services refuse", function ()
		local world = standin.world();
		world:virtual_host(HOST, { web_push_vapid_subject = "admin@example.org" });
		local handle, err = world:load(HOST);
		assert.is_nil(handle);
		assert.truthy(tostring(err):find("web_push_vapid_subject", 1, true));
	end);

	it("takes the subject from contact_info, else https://host with a warning naming the option", function ()
		local world = loaded({ contact_info = { admin = { "xmpp:admin@example.org", "mailto:admin@example.org" } } });
		assert.equal("mailto:admin@example.org", world.senders[1].options.subject);
		assert.same({}, world:log_lines("web_push_vapid_subject", "warn"));

		world = loaded({ contact_info = { admin = { "mailto:root@localhost", "mailto:ops@example.org" } } });
		assert.equal("mailto:ops@example.org", world.senders[1].options.subject);

		world = loaded();
		assert.equal("https://" .. HOST, world.senders[1].options.subject);
		assert.equal(1, #world:log_lines("web_push_vapid_subject", "warn"));
	end);

	it("passes the sender options of DESIGN.md", function ()
		local world = loaded({
			web_push_workers = 3, web_push_queue_size = 50, web_push_timeout = 4,
			web_push_allow_insecure_endpoints = true, web_push_endpoint_hosts = { "push.example.net" },
			web_push_vapid_subject = "mailto:ops@example.org",
		});
		local options = world.senders[1].options;
		assert.equal(3, options.workers);
		assert.equal(50, options.queue_size);
		assert.equal(4, options.timeout);
		assert.is_true(options.allow_insecure);
		assert.same({ "push.example.net" }, options.hosts);
		assert.equal("mailto:ops@example.org", options.subject);
	end);
end);

describe("options", function ()
	it("are clamped to their bounds (the native library's for what it takes), with a warning naming each", function ()
		local world, host = loaded({
			web_push_workers = 100, web_push_queue_size = 0, web_push_timeout = 0.01, web_push_ttl = 1e9,
			push_max_devices = 0, web_push_min_interval = -1,
		});
		local options = world.senders[1].options;
		assert.equal(standin.LIMITS.workers[2], options.workers);
		assert.equal(standin.LIMITS.queue_size[1], options.queue_size);
		assert.equal(standin.LIMITS.timeout[1], options.timeout);
		for _, name in ipairs({ "web_push_workers", "web_push_queue_size", "web_push_timeout", "web_push_ttl",
			"push_max_devices", "web_push_min_interval" }) do
			assert.equal(1, #world:log_lines(name, "warn"), name);
		end
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", standin.to_juliet("hi"));
		assert.equal(standin.LIMITS.ttl[2], world:last_push(sub).job.ttl);
	end);

	it("within their bounds give no warning", function ()
		local world = loaded({ web_push_workers = 64, web_push_timeout = 0.1, web_push_ttl = 0, web_push_vapid_subject = "mailto:a@example.org" });
		assert.same({}, world:log_lines("", "warn"));
	end);
end);

describe("the VAPID key", function ()
	it("is made on first load, stored, and reused on every later load", function ()
		local world, host = loaded();
		local key = host:vapid_key();
		assert.is_string(key);
		assert.equal(87, #key);
		local stored = world:store(HOST, "web_push_vapid").data[""];
		assert.equal(key, world.native.public_key(stored.private));
		host = assert(host:reload());
		assert.equal(key, host:vapid_key());
		assert.equal(1, world:store(HOST, "web_push_vapid").writes);
		-- The sender signs with that key.
		assert.equal(stored.private, world.senders[#world.senders].options.private_key);
	end);

	it("is one per VirtualHost", function ()
		local world = standin.world();
		world:virtual_host("a.example", {});
		world:virtual_host("b.example", {});
		local a = assert(world:load("a.example"));
		local b = assert(world:load("b.example"));
		assert.are_not.equal(a:vapid_key(), b:vapid_key());
		assert.equal(2, #world.senders);
	end);

	it("is shown in disco#info as a data form, with the feature", function ()
		local _, host = loaded();
		local query = host:disco(host:session("juliet"));
		local feature = query:get_child_with_attr("feature", nil, "var", NS);
		assert.truthy(feature);
		local key = host:vapid_key();
		assert.is_string(key);
		assert.equal(key:gsub("[^A-Za-z0-9_-]", ""), key); -- base64url, no padding
	end);
end);

describe("prosodyctl mod_web_push", function ()
	local function command(world, ...)
		world:virtual_host(HOST);
		local world_env_print = {};
		local api = world:make_api("*");
		api.host = "*";
		local env = setmetatable({
			module = api, prosody = world.prosody,
			require = function (name) return world:require_for_module(name); end,
			print = function (...) world_env_print[#world_env_print + 1] = table.concat({ ... }, " "); end,
			package = setmetatable({
				loadlib = function () return function ()
					return world:native_for_module(function () error("prosodyctl must not start a sender"); end);
				end; end;
			}, { __index = package }),
		}, { __index = _G });
		api.environment = env;
		world.prosody.process_type = "prosodyctl";
		assert(loadfile(standin.MODULE_FILE, "t", env))();
		assert.same({}, api.hooks);
		local status = api.command({ ... });
		world.prosody.process_type = "prosody";
		return status, table.concat(world_env_print, "\n");
	end

	it("prints the public key the host uses", function ()
		local world, host = loaded();
		local key = host:vapid_key();
		local status, out = command(world, "key", HOST);
		assert.equal(0, status);
		assert.equal(key, out);
		assert.same({ 0, key }, { command(world, HOST) });
	end);

	it("rotates the key with a warning, and the module uses the new one after a reload", function ()
		local world, host = loaded();
		local old = host:vapid_key();
		local status, out = command(world, "rotate", HOST);
		assert.equal(0, status);
		local new = out:match("^(%S+)\n");
		assert.are_not.equal(old, new);
		assert.truthy(out:find("subscribe again", 1, true));
		host = assert(host:reload());
		assert.equal(new, host:vapid_key());
	end);

	it("imports a PEM key", function ()
		local world = standin.world();
		local private, public = world.native.generate_keypair();
		local path = os.tmpname();
		local f = assert(io.open(path, "w"));
		f:write(world.native.export_private_key_pem(private));
		f:close();
		local status, out = command(world, "import", HOST, path);
		os.remove(path);
		assert.equal(0, status);
		assert.equal(public, out:match("^(%S+)\n"));
		local host = assert(world:load(HOST));
		assert.equal(public, host:vapid_key());
	end);

	it("refuses garbage, unknown hosts and missing arguments without touching the key", function ()
		local world, host = loaded();
		local key = host:vapid_key();
		local path = os.tmpname();
		local f = assert(io.open(path, "w"));
		f:write("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n");
		f:close();
		assert.equal(1, (command(world, "import", HOST, path)));
		os.remove(path);
		assert.equal(1, (command(world, "import", HOST, "/nonexistent/key.pem")));
		assert.equal(1, (command(world, "rotate", "unknown.example")));
		assert.equal(1, (command(world, "key")));
		assert.equal(1, (command(world, "frobnicate", HOST)));
		assert.equal(key, (select(2, command(world, "key", HOST))));
	end);
end);

describe("enable", function ()
	it("stores the subscription and answers an empty result", function ()
		local world, host = loaded();
		local session = host:session("juliet");
		local sub = standin.subscription();
		local answer = host:enable(session, sub);
		assert.equal("result", answer.attr.type);
		assert.equal(0, #answer.tags);
		local stored = world:store(HOST, "web_push").data.juliet[sub.endpoint];
		assert.equal(sub.p256dh, stored.p256dh);
		assert.equal(sub.auth, stored.auth);
		assert.equal(0, stored.errors);
		assert.is_number(stored.enabled_at);
		assert.is_true(session.web_push.endpoints[sub.endpoint]);
	end);

	it("accepts whitespace around the values (pretty-printed XML)", function ()
		local world, host = loaded();
		local sub = standin.subscription();
		local answer = host:iq(host:session("juliet"), standin.parse(([[
			<enable xmlns='urn:xmpp:webpush:0'>
				<endpoint>
					%s
				</endpoint>
				<p256dh> %s </p256dh>
				<auth>%s
				</auth>
			</enable>]]):format(sub.endpoint, sub.p256dh, sub.auth)));
		assert.equal("result", answer.attr.type);
		assert.truthy(world:store(HOST, "web_push").data.juliet[sub.endpoint]);
	end);

	it("replaces the keys when the same endpoint is enabled again", function ()
		local world, host = loaded();
		local session, sub = host:subscribed_session("juliet");
		local again = standin.subscription(sub.endpoint);
		assert.equal("result", host:enable(session, again).attr.type);
		local stored = world:store(HOST, "web_push").data.juliet;
		assert.equal(again.p256dh, stored[sub.endpoint].p256dh);
		local n = 0;
		for _ in pairs(stored) do n = n + 1; end
		assert.equal(1, n);
	end);

	-- Every child may be missing, empty, huge or garbage.
	local good = standin.subscription("https://push.example.net/wpush/v2/abc");
	local off_curve = standin.b64url("\4" .. string.rep("\255", 64));
	local cases = {
		{ "no children", {}, "bad-request", "endpoint" },
		{ "no endpoint", { p256dh = good.p256dh, auth = good.auth }, "bad-request", "endpoint" },
		{ "no p256dh", { endpoint = good.endpoint, auth = good.auth }, "bad-request", "p256dh" },
		{ "no auth", { endpoint = good.endpoint, p256dh = good.p256dh }, "bad-request", "auth" },
		{ "empty endpoint", { endpoint = "", p256dh = good.p256dh, auth = good.auth }, "bad-request", "endpoint" },
		{ "blank endpoint", { endpoint = " \n\t ", p256dh = good.p256dh, auth = good.auth }, "bad-request", "endpoint" },
		{ "empty p256dh", { endpoint = good.endpoint, p256dh = "", auth = good.auth }, "bad-request", "p256dh" },
		{ "p256dh not base64url", { endpoint = good.endpoint, p256dh = "not*base64url!", auth = good.auth }, "bad-request", "p256dh" },
		{ "p256dh short", { endpoint = good.endpoint, p256dh = standin.b64url("\4" .. ("\1"):rep(11)), auth = good.auth },
			"bad-request", "p256dh" },
		{ "p256dh off the curve", { endpoint = good.endpoint, p256dh = off_curve, auth = good.auth }, "bad-request", "p256dh" },
		{ "p256dh compressed", { endpoint = good.endpoint, p256dh = standin.b64url("\2" .. ("\1"):rep(32)), auth = good.auth },
			"bad-request", "p256dh" },
		{ "p256dh huge", { endpoint = good.endpoint, p256dh = ("A"):rep(100000), auth = good.auth }, "bad-request", "p256dh" },
		{ "auth short", { endpoint = good.endpoint, p256dh = good.p256dh, auth = standin.b64url("abc") }, "bad-request", "auth" },
		{ "auth not base64url", { endpoint = good.endpoint, p256dh = good.p256dh, auth = "%%%%" }, "bad-request", "auth" },
		{ "auth huge", { endpoint = good.endpoint, p256dh = good.p256dh, auth = ("A"):rep(20000) }, "bad-request", "auth" },
		{ "auth not ASCII", { endpoint = good.endpoint, p256dh = good.p256dh, auth = "\195\169\226\130\172\240\159\152\128" },
			"bad-request", "auth" },
		{ "endpoint not a URL", { endpoint = "not a url", p256dh = good.p256dh, auth = good.auth }, "bad-request", "endpoint" },
		{ "endpoint relative", { endpoint = "/wpush/v2/x", p256dh = good.p256dh, auth = good.auth }, "bad-request", "endpoint" },
		{ "endpoint too long", { endpoint = good.endpoint .. "/" .. ("x"):rep(10000), p256dh = good.p256dh, auth = good.auth },
			"bad-request", "endpoint" },
		{ "endpoint huge with blanks", { endpoint = "a" .. (" "):rep(200000) .. "b", p256dh = good.p256dh, auth = good.auth },
			"bad-request", "endpoint" },
		{ "endpoint junk", { endpoint = "\226\152\131\240\159\146\169://\195\169", p256dh = good.p256dh, auth = good.auth },
			"bad-request", "endpoint" },
		{ "endpoint with user info", { endpoint = "https://user:pw@push.example.net/x", p256dh = good.p256dh, auth = good.auth },
			"bad-request", "endpoint" },
		{ "endpoint ftp", { endpoint = "ftp://push.example.net/x", p256dh = good.p256dh, auth = good.auth }, "not-acceptable" },
		{ "endpoint http", { endpoint = "http://push.example.net/x", p256dh = good.p256dh, auth = good.auth }, "not-acceptable" },
		{ "endpoint loopback", { endpoint = "https://127.0.0.1/x", p256dh = good.p256dh, auth = good.auth }, "not-acceptable" },
		{ "endpoint private v6", { endpoint = "https://[fd00::1]/x", p256dh = good.p256dh, auth = good.auth }, "not-acceptable" },
		{ "endpoint localhost", { endpoint = "https://localhost/x", p256dh = good.p256dh, auth = good.auth }, "not-acceptable" },
	};
	for _, case in ipairs(cases) do
		it("answers " .. case[3] .. " for " .. case[1], function ()
			local world, host = loaded();
			local answer = host:enable(host:session("juliet"), case[2]);
			local condition, text = condition_of(answer);
			assert.equal(case[3], condition);
			if case[4] then
				assert.truthy(text and text:find(case[4], 1, true), "error text names " .. case[4] .. ": " .. tostring(text));
			end
			assert.is_nil(world:store(HOST, "web_push").data.juliet);
			assert.same({}, world:leaks({ good.p256dh, good.auth }));
		end);
	end

	it("answers bad-request for children with elements inside", function ()
		local world, host = loaded();
		local request = st.stanza("enable", { xmlns = NS })
			:tag("endpoint"):tag("x"):text(good.endpoint):up():up()
			:text_tag("p256dh", good.p256dh):text_tag("auth", good.auth);
		local condition, text = condition_of(host:iq(host:session("juliet"), request));
		assert.equal("bad-request", condition);
		assert.truthy(text:find("endpoint", 1, true));
		assert.is_nil(world:store(HOST, "web_push").data.juliet);
	end);

	it("is not a get", function ()
		local _, host = loaded();
		local answer = host:iq(host:session("juliet"), standin.enable_request(standin.subscription()), "get");
		assert.equal("error", answer.attr.type);
	end);

	it("follows web_push_endpoint_hosts", function ()
		local _, host = loaded({ web_push_endpoint_hosts = { "push.example.net", "*.push.example.org" } });
		local session = host:session("juliet");
		for _, endpoint in ipairs({ "https://push.example.net/a", "https://eu.push.example.org/b" }) do
			assert.equal("result", host:enable(session, standin.subscription(endpoint)).attr.type);
		end
		for _, endpoint in ipairs({ "https://push.example.org.evil.test/c", "https://other.example/d" }) do
			assert.equal("not-acceptable", condition_of(host:enable(session, standin.subscription(endpoint))));
		end
	end);

	it("allows http and loopback with web_push_allow_insecure_endpoints", function ()
		local _, host = loaded({ web_push_allow_insecure_endpoints = true });
		local answer = host:enable(host:session("juliet"), standin.subscription("http://127.0.0.1:8080/x"));
		assert.equal("result", answer.attr.type);
	end);

	it("answers internal-server-error when storage fails, changing nothing", function ()
		local world, host = loaded();
		local session, first = host:subscribed_session("juliet");
		local store = world:store(HOST, "web_push");
		local before = standin.deep_copy(store.data);
		store.fail_writes = true;
		local second = standin.subscription();
		assert.equal("internal-server-error", condition_of(host:enable(session, second)));
		assert.same(before, store.data);
		assert.is_nil(session.web_push.endpoints[second.endpoint]);
		-- The cache did not change either: disabling the one that was refused finds nothing.
		store.fail_writes = false;
		assert.equal("item-not-found", condition_of(host:disable(session, second.endpoint)));
		assert.equal("result", host:disable(session, first.endpoint).attr.type);
	end);

	it("answers internal-server-error when the stored subscriptions cannot be read, and overwrites nothing", function ()
		local world, host = loaded();
		local store = world:store(HOST, "web_push");
		local existing = standin.subscription();
		store.data.juliet = { [existing.endpoint] = { p256dh = existing.p256dh, auth = existing.auth, enabled_at = 1, errors = 0 } };
		store.fail_reads = true;
		local session = host:session("juliet");
		assert.equal("internal-server-error", condition_of(host:enable(session, standin.subscription())));
		assert.equal("internal-server-error", condition_of(host:disable(session, existing.endpoint)));
		assert.equal(0, store.writes);
		assert.truthy(store.data.juliet[existing.endpoint]);
	end);

	it("fires web_push/registration before storing; true vetoes with not-allowed", function ()
		local world, host = loaded();
		local seen;
		host.api:hook("web_push/registration", function (event)
			seen = event;
			return event.endpoint:find("blocked", 1, true) ~= nil;
		end);
		local session = host:session("juliet");
		local blocked = standin.subscription("https://push.example.net/blocked");
		assert.equal("not-allowed", condition_of(host:enable(session, blocked)));
		assert.equal("juliet", seen.username);
		assert.equal(blocked.p256dh, seen.subscription.p256dh);
		assert.is_nil(world:store(HOST, "web_push").data.juliet);
		assert.equal("result", host:enable(session, standin.subscription()).attr.type);
	end);

	it("ties the subscription to the newest session that enabled it", function ()
		local _, host = loaded();
		local phone, desktop = host:session("juliet", "phone"), host:session("juliet", "desktop");
		local sub = standin.subscription();
		host:enable(phone, sub);
		host:enable(desktop, sub);
		assert.is_nil(phone.web_push);
		assert.is_true(desktop.web_push.endpoints[sub.endpoint]);
	end);
end);

describe("the device cap", function ()
	it("drops the least recently enabled beyond push_max_devices, in storage and session", function ()
		local world, host = loaded({ push_max_devices = 2 });
		local unregistered = {};
		host.api:hook("web_push/unregistered", function (event) unregistered[#unregistered + 1] = event; end);
		local a, b = host:session("juliet", "a"), host:session("juliet", "b");
		local first, second, third = standin.subscription(), standin.subscription(), standin.subscription();
		host:enable(a, first);
		world:advance(1);
		host:enable(b, second);
		world:advance(1);
		host:enable(b, third);
		local stored = world:store(HOST, "web_push").data.juliet;
		assert.is_nil(stored[first.endpoint]);
		assert.truthy(stored[second.endpoint]);
		assert.truthy(stored[third.endpoint]);
		assert.is_nil(a.web_push);
		assert.equal(1, #unregistered);
		assert.same({ "juliet", first.endpoint, "device-cap" },
			{ unregistered[1].username, unregistered[1].endpoint, unregistered[1].reason });
		assert.equal("item-not-found", condition_of(host:disable(a, first.endpoint)));
	end);

	it("counts enabling again as recent", function ()
		local world, host = loaded({ push_max_devices = 2 });
		local session = host:session("juliet");
		local first, second, third = standin.subscription(), standin.subscription(), standin.subscription();
		host:enable(session, first);
		world:advance(1);
		host:enable(session, second);
		world:advance(1);
		host:enable(session, standin.subscription(first.endpoint)); -- first is now the newest
		world:advance(1);
		host:enable(session, third);
		local stored = world:store(HOST, "web_push").data.juliet;
		assert.truthy(stored[first.endpoint]);
		assert.is_nil(stored[second.endpoint]);
		assert.truthy(stored[third.endpoint]);
	end);

	it("writes the new subscription and the drop together, or neither", function ()
		local world, host = loaded({ push_max_devices = 1 });
		local session, first = host:subscribed_session("juliet");
		world:store(HOST, "web_push").fail_writes = true;
		assert.equal("internal-server-error", condition_of(host:enable(session, standin.subscription())));
		assert.truthy(world:store(HOST, "web_push").data.juliet[first.endpoint]);
		assert.is_true(session.web_push.endpoints[first.endpoint]);
	end);
end);

describe("disable", function ()
	it("removes the subscription from storage and session and fires web_push/unregistered", function ()
		local world, host = loaded();
		local events = {};
		host.api:hook("web_push/unregistered", function (event) events[#events + 1] = event.reason; end);
		local session, sub = host:subscribed_session("juliet");
		assert.equal("result", host:disable(session, sub.endpoint).attr.type);
		assert.is_nil(world:store(HOST, "web_push").data.juliet);
		assert.is_nil(session.web_push);
		assert.same({ "disabled" }, events);
		assert.equal("item-not-found", condition_of(host:disable(session, sub.endpoint)));
	end);

	it("answers bad-request without an endpoint and item-not-found for an unknown one", function ()
		local _, host = loaded();
		local session = host:session("juliet");
		assert.equal("bad-request", condition_of(host:disable(session, nil)));
		assert.equal("bad-request", condition_of(host:disable(session, "")));
		assert.equal("bad-request", condition_of(host:disable(session, ("x"):rep(50000))));
		assert.equal("item-not-found", condition_of(host:disable(session, "https://push.example.net/none")));
		local nested = st.stanza("disable", { xmlns = NS }):tag("endpoint"):tag("b"):text("x");
		assert.equal("bad-request", condition_of(host:iq(session, nested)));
	end);

	it("answers internal-server-error when storage fails, keeping the subscription", function ()
		local world, host = loaded();
		local session, sub = host:subscribed_session("juliet");
		world:store(HOST, "web_push").fail_writes = true;
		assert.equal("internal-server-error", condition_of(host:disable(session, sub.endpoint)));
		assert.truthy(world:store(HOST, "web_push").data.juliet[sub.endpoint]);
		assert.is_true(session.web_push.endpoints[sub.endpoint]);
	end);

	it("only touches the account's own subscriptions", function ()
		local world, host = loaded();
		local sub = standin.subscription();
		host:enable(host:session("juliet"), sub);
		assert.equal("item-not-found", condition_of(host:disable(host:session("romeo"), sub.endpoint)));
		assert.truthy(world:store(HOST, "web_push").data.juliet[sub.endpoint]);
	end);
end);
