-- mod_web_push against a stand-in of Prosody: what the push service answers (delivered, gone,
-- retry, rejected), rate limits and coalescing, configuration changes, metrics, logs, unload.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";

local HOST = standin.HOST;
local setup = standin.setup;

local function offline_juliet(host, count)
	return host:subscribed_offline("juliet", count);
end

local function message(body)
	return standin.to_juliet(body or "hello");
end

local function stored(world, sub)
	return world:stored("juliet", sub);
end

local function last_push(world, sub)
	return world:last_push(sub);
end

describe("a delivered push", function ()
	it("is counted, and resets the error count", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "failed", { status = 400 });
		assert.equal(1, stored(world, sub).errors);
		world:advance(10);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		assert.equal(0, stored(world, sub).errors);
		assert.equal(2, world.metrics[HOST .. "/pushes_sent"]);
		assert.equal(1, world.metrics[HOST .. "/pushes_delivered"]);
		assert.equal(1, world.metrics[HOST .. "/pushes_failed"]);
	end);

	it("does not write storage when there was nothing to reset", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		local writes = world:store(HOST, "web_push").writes;
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		assert.equal(writes, world:store(HOST, "web_push").writes);
	end);

	it("is timed from the stanza to the push service's answer", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:advance(0.25);
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		assert.same({ 0.25 }, world.samples[HOST .. "/push_latency"]);
	end);
end);

describe("a gone subscription (404, 410)", function ()
	for _, status in ipairs({ 404, 410 }) do
		it("is removed at once from storage and session, with web_push/unregistered (" .. status .. ")", function ()
			local world, host = setup();
			local unregistered = {};
			host.api:hook("web_push/unregistered", function (event) unregistered[#unregistered + 1] = event; end);
			local phone = host:session("juliet", "phone");
			local gone, kept = standin.subscription(), standin.subscription();
			host:enable(phone, gone);
			host:enable(host:session("juliet", "laptop"), kept);
			host:hibernate(phone);
			host:archived("juliet", message(), "a0"); -- to the laptop's... no: the laptop is live
			host:queue(phone, message("wake"));
			world:answer(last_push(world, gone), "gone", { status = status });
			assert.is_nil(stored(world, gone));
			assert.truthy(stored(world, kept));
			assert.is_nil(phone.web_push);
			assert.equal(1, #unregistered);
			assert.equal("gone", unregistered[1].reason);
			assert.equal(gone.endpoint, unregistered[1].endpoint);
			assert.equal(1, world.metrics[HOST .. "/pushes_gone"]);
			-- Never contacted again.
			host:close(host.world.prosody.hosts[HOST].sessions.juliet.sessions.laptop);
			host:offline("juliet", message("again"));
			world:advance(60);
			assert.equal(1, #world:pushes_for(gone));
			assert.equal(1, #world:pushes_for(kept));
		end);
	end

	it("is removed after a restart too (stored subscription, fresh module)", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host = assert(host:reload());
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "gone", { status = 410 });
		assert.is_nil(stored(world, sub));
		host = assert(host:reload());
		host:offline("juliet", message("after"));
		assert.equal(1, #world:pushes_for(sub));
	end);

	it("stays when storage fails, and is removed at the next answer", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:store(HOST, "web_push").fail_writes = true;
		world:answer(last_push(world, sub), "gone", { status = 410 });
		assert.truthy(stored(world, sub));
		world:store(HOST, "web_push").fail_writes = false;
		world:advance(10);
		host:offline("juliet", message("again"));
		world:answer(last_push(world, sub), "gone", { status = 410 });
		assert.is_nil(stored(world, sub));
	end);

	it("survives a handler of web_push/unregistered that throws", function ()
		local world, host = setup();
		host.api:hook("web_push/unregistered", function () error("a broken handler"); end);
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "gone", { status = 410 });
		assert.is_nil(stored(world, sub));
		assert.equal(1, #world:log_lines("a broken handler", "error"));
	end);
end);

describe("the sender's retries", function ()
	it("end in one final result per push; the module retries nothing itself", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "delivered", { status = 201, attempts = 3 });
		world:advance(10);
		host:offline("juliet", message("two"));
		world:answer(last_push(world, sub), "failed", { status = 503, attempts = 10 });
		world:advance(3600);
		assert.equal(2, #world:pushes_for(sub));
		assert.equal(11, world.metrics[HOST .. "/pushes_retried"]);
		assert.equal(0, world:task_count());
	end);

	it("are cancelled when the subscription is disabled meanwhile", function ()
		local world, host = setup();
		local session = host:session("juliet", "other");
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		local push = last_push(world, sub); -- queued or waiting for a retry in the sender
		host:disable(session, sub.endpoint);
		assert.same({ { account = "juliet@" .. HOST, endpoint = sub.endpoint } }, world.cancels);
		assert.equal("cancelled", push.final);
		world:advance(3600);
		assert.equal(1, #world:pushes_for(sub));
		assert.equal(0, world:task_count());
	end);

	it("are cancelled when the subscription is enabled again with new keys", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session);
		host:queue(session, message());
		local push = last_push(world, sub);
		host:enable(session, standin.subscription(sub.endpoint));
		assert.equal("cancelled", push.final);
		world:advance(60);
		assert.equal(1, world:job_count());
	end);
end);

describe("failed pushes", function ()
	it("count toward push_max_errors in a row; then the subscription is disabled", function ()
		local world, host = setup({ push_max_errors = 3 });
		local unregistered = {};
		host.api:hook("web_push/unregistered", function (event) unregistered[#unregistered + 1] = event.reason; end);
		local sub = offline_juliet(host);
		for i = 1, 3 do
			host:offline("juliet", message("m" .. i));
			world:advance(5);
			local push, n = last_push(world, sub);
			assert.equal(i, n);
			world:answer(push, "failed", { status = 413 });
		end
		assert.is_nil(stored(world, sub));
		assert.same({ "errors" }, unregistered);
		host:offline("juliet", message("after"));
		world:advance(60);
		assert.equal(3, #world:pushes_for(sub));
	end);

	it("count once per push whatever failed: the network, 429 and 5xx until the sender gave up, or a refusal", function ()
		local world, host = setup({ push_max_errors = 3 });
		local sub = offline_juliet(host);
		local answers = { { reason = "dns: name not found", attempts = 10 }, { status = 503, attempts = 4 }, { status = 429, attempts = 2 } };
		for i, answer in ipairs(answers) do
			if i > 1 then assert.equal(i - 1, stored(world, sub).errors); end
			host:offline("juliet", message("m" .. i));
			world:advance(5);
			world:answer(last_push(world, sub), "failed", answer);
		end
		assert.is_nil(stored(world, sub));
	end);

	it("never count what says nothing about the subscription: expired, refused, cancelled, a full queue, a veto", function ()
		local world, host = setup({ push_max_errors = 1 });
		local sub = offline_juliet(host);
		local function push(body)
			host:offline("juliet", message(body));
			world:advance(5);
			return last_push(world, sub);
		end
		world:answer(push("a"), "expired", { attempts = 0 });
		world:answer(push("b"), "refused", { reason = "endpoint not allowed", attempts = 0 });
		push("c");
		host:enable(host:session("juliet", "again"), standin.subscription(sub.endpoint)); -- cancels it
		local renewed = world:store(HOST, "web_push").data.juliet[sub.endpoint];
		world.queue_full = true;
		host:offline("juliet", message("d"));
		world.queue_full = false;
		world:advance(5);
		host.api:hook("web_push/push", function () return true; end);
		host:offline("juliet", message("e"));
		world:advance(5);
		assert.same(renewed, world:store(HOST, "web_push").data.juliet[sub.endpoint]);
		assert.equal(0, renewed.errors);
		assert.equal(1, world.metrics[HOST .. "/pushes_expired"]);
	end);

	it("are counted in a row only: a delivery in between starts again", function ()
		local world, host = setup({ push_max_errors = 2 });
		local sub = offline_juliet(host);
		local outcomes = { "failed", "delivered", "failed", "delivered", "failed" };
		for i, outcome in ipairs(outcomes) do
			host:offline("juliet", message("m" .. i));
			world:advance(5);
			world:answer(last_push(world, sub), outcome, { status = outcome == "failed" and 500 or 201 });
		end
		assert.equal(1, stored(world, sub).errors);
	end);

	it("keep their count across a restart", function ()
		local world, host = setup({ push_max_errors = 2 });
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "failed", { status = 400 });
		host = assert(host:reload());
		host:offline("juliet", message("two"));
		world:answer(last_push(world, sub), "failed", { status = 400 });
		assert.is_nil(stored(world, sub));
	end);

	it("log 400/401/403 once as a configuration problem", function ()
		local world, host = setup({ push_max_errors = 100 });
		local sub = offline_juliet(host);
		for i = 1, 4 do
			host:offline("juliet", message("m" .. i));
			world:advance(5);
			world:answer(last_push(world, sub), "failed", { status = 403, reason = "BadJwtToken" });
		end
		assert.equal(1, #world:log_lines("configuration", "warn"));
		assert.equal(3, #world:log_lines("refused", "info"));
		assert.equal(4, stored(world, sub).errors);
	end);
end);

describe("the sender refusing a job", function ()
	it("is counted and logged, and the next push goes out", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		world.queue_full = true;
		host:offline("juliet", message());
		assert.equal(0, #world:pushes_for(sub));
		assert.equal(1, world.metrics[HOST .. "/pushes_failed"]);
		assert.equal(1, #world:log_lines("queue full", "warn"));
		world.queue_full = false;
		world:advance(5);
		host:offline("juliet", message("two"));
		assert.equal(1, #world:pushes_for(sub));
	end);
end);

describe("rate limits", function ()
	it("turn a flood of 1,000 offline messages into a bounded number of pushes", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		for i = 1, 1000 do host:offline("juliet", message("flood " .. i)); end
		assert.equal(1, #world:pushes_for(sub));
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		world:advance(2.5);
		local pushes = world:pushes_for(sub);
		assert.equal(2, #pushes);
		assert.equal(999, pushes[2].notification["message-count"]);
		world:answer(pushes[2], "delivered", { status = 201 });
		world:advance(600);
		assert.equal(2, #world:pushes_for(sub));
	end);

	it("space pushes to one subscription by web_push_min_interval, coalescing what comes in between", function ()
		local world, host = setup({ web_push_min_interval = 10, web_push_max_pushes_per_minute = 0 });
		local sub = offline_juliet(host);
		host:offline("juliet", message("1"));
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		world:advance(3);
		host:offline("juliet", message("2"));
		host:offline("juliet", message("3"));
		world:advance(6.9);
		assert.equal(1, #world:pushes_for(sub));
		world:advance(0.2);
		local push, n = last_push(world, sub);
		assert.equal(2, n);
		assert.equal(2, push.notification["message-count"]);
	end);

	it("wait for the push in flight before the next", function ()
		local world, host = setup({ web_push_min_interval = 0 });
		local sub = offline_juliet(host);
		host:offline("juliet", message("1"));
		host:offline("juliet", message("2"));
		world:advance(30);
		assert.equal(1, #world:pushes_for(sub));
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		world:advance(0.1);
		assert.equal(2, #world:pushes_for(sub));
	end);

	it("cap pushes per account per minute over all its subscriptions", function ()
		local world, host = setup({ web_push_min_interval = 0, web_push_max_pushes_per_minute = 6, push_max_devices = 3 });
		local _, subs = offline_juliet(host, 3);
		local function total()
			local n = 0;
			for _, sub in ipairs(subs) do n = n + #world:pushes_for(sub); end
			return n;
		end
		local function answer_all()
			for _, record in ipairs(world.all_jobs or {}) do
				if not record.answered then record.answered = true; world:answer(record, "delivered", { status = 201 }); end
			end
		end
		for i = 1, 30 do
			host:offline("juliet", message("m" .. i));
			answer_all();
			world:advance(1);
			answer_all();
		end
		-- 30 seconds: the bucket of 6 and 3 more refilled (6 per minute).
		assert.truthy(total() <= 6 + 4, "pushes: " .. total());
		assert.truthy(total() >= 6);
		world:advance(120);
		answer_all();
		world:advance(120);
		-- Whatever was held back went out, coalesced.
		for _, sub in ipairs(subs) do
			local push = last_push(world, sub);
			assert.truthy(push.notification["last-message-body"]);
		end
	end);
end);

describe("a configuration change", function ()
	it("keeps endpoints no longer allowed by web_push_endpoint_hosts stored, but never contacts them", function ()
		local world = standin.world();
		world:virtual_host(HOST, {});
		local host = assert(world:load(HOST));
		local allowed, banned = standin.subscription("https://push.example.net/a"), standin.subscription("https://other.example/b");
		local session = host:session("juliet");
		host:enable(session, allowed);
		host:enable(session, banned);
		host:close(session);
		world.config[HOST].web_push_endpoint_hosts = { "push.example.net" };
		host = assert(host:reload());
		host:offline("juliet", message());
		world:advance(60);
		assert.equal(1, #world:pushes_for(allowed));
		assert.equal(0, #world:pushes_for(banned));
		assert.truthy(stored(world, banned));
		assert.same({ "push.example.net" }, host:sender().options.hosts);
	end);

	it("skips damaged stored records", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		world:store(HOST, "web_push").data.juliet["https://push.example.net/broken"] = "not a record";
		host = assert(host:reload());
		host:offline("juliet", message());
		assert.equal(1, #world:pushes_for(sub));
		assert.equal(1, world:job_count());
	end);
end);

describe("unloading", function ()
	it("leaves no watcher, timer, hook or sender behind, and loses no subscription", function ()
		local world, host = setup();
		local session = host:subscribed_session("juliet", "live");
		host:ack_delayed(session, message("pending burst")); -- a batch timer
		local other = host:subscribed_offline("juliet");
		host:offline("juliet", message("1")); -- a job in the sender (queued, or waiting for a retry)
		host:offline("juliet", message("2")); -- coalesced, waiting
		local sender = host:sender();
		local before = standin.deep_copy(world:store(HOST, "web_push").data);
		host:unload();
		assert.is_true(sender.closed);
		assert.equal(0, world:open_watchers());
		assert.equal(0, world:task_count());
		for _, events in ipairs({ host.events, world.global_events }) do
			for event in pairs(events._handlers) do
				local handlers = events.get_handlers(event);
				assert.truthy(not handlers or #handlers == 0, event .. " still hooked");
			end
		end
		assert.same(before, world:store(HOST, "web_push").data);
		-- Both messages, to both subscriptions, are kept for the next load.
		assert.equal(4, #world:store(HOST, "web_push_pending").data[""].jobs);
		-- Results that arrive late are nobody's business.
		world:answer(last_push(world, other), "gone", { status = 410 });
		assert.truthy(stored(world, other));
	end);

	it("and loading again picks up the subscriptions and the sessions tied to them", function ()
		local world, host = setup();
		local session, sub = host:subscribed_session("juliet");
		host = assert(host:reload());
		assert.equal(2, #world.senders);
		assert.equal(1, world:open_watchers());
		host:hibernate(session);
		host:queue(session, message("after reload"));
		assert.equal(1, #world:pushes_for(sub));
		assert.equal("result", host:disable(session, sub.endpoint).attr.type);
	end);
end);

describe("results without watchfd", function ()
	it("are polled on a timer", function ()
		local world, host = setup(nil, { no_watchfd = true });
		local sub = offline_juliet(host);
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "gone", { status = 410 });
		assert.truthy(stored(world, sub));
		world:advance(0.2);
		assert.is_nil(stored(world, sub));
		assert.equal(1, #world:log_lines("watchfd", "warn"));
		host:unload();
		assert.equal(0, world:task_count());
	end);
end);

describe("logs", function ()
	it("never contain keys or message text, whatever happens", function ()
		local world, host = setup({ push_notification_with_body = true, push_notification_with_sender = true, push_max_errors = 2 });
		local subs = {};
		local session = host:session("juliet");
		for i = 1, 4 do subs[i] = standin.subscription(); host:enable(session, subs[i]); end
		host:enable(session, { endpoint = subs[1].endpoint, p256dh = "garbage" .. subs[1].p256dh, auth = subs[1].auth });
		host:close(session);
		local secret = "the secret message text";
		host:offline("juliet", message(secret));
		local outcomes = { { "delivered", 201 }, { "gone", 410 }, { "failed", 429 }, { "failed", 403 } };
		for i, outcome in ipairs(outcomes) do
			world:answer(last_push(world, subs[i]), outcome[1], { status = outcome[2], reason = "HTTP " .. outcome[2] });
		end
		world:advance(3600);
		local private = world:store(HOST, "web_push_vapid").data[""].private;
		local secrets = { secret, private };
		for _, sub in ipairs(subs) do
			secrets[#secrets + 1] = sub.p256dh;
			secrets[#secrets + 1] = sub.auth;
			secrets[#secrets + 1] = sub.endpoint:match("[^/]+$"); -- the endpoint's capability part
		end
		assert.same({}, world:leaks(secrets));
		assert.truthy(#world.logs > 5);
	end);

	it("say each outcome once", function ()
		local world, host = setup();
		local sub = offline_juliet(host);
		local before = #world.logs;
		host:offline("juliet", message());
		world:answer(last_push(world, sub), "delivered", { status = 201 });
		local lines = {};
		for i = before + 1, #world.logs do lines[#lines + 1] = world.logs[i].text; end
		assert.equal(1, #world:log_lines("delivered"), table.concat(lines, "\n"));
	end);
end);
