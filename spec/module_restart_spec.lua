-- mod_web_push against a stand-in of Prosody: pending pushes across a shutdown and a start (kept
-- in storage at shutdown only), and across a module reload (handed over in memory).
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";

local HOST = standin.HOST;
local setup, to_juliet = standin.setup, standin.to_juliet;

local function kept(world)
	local record = world:store(HOST, "web_push_pending").data[""];
	return record and record.jobs;
end

-- Prosody starts again on the same storage: a fresh module (modules are not unloaded at shutdown;
-- the new process starts from nothing).
local function start_again(world, host)
	host.api.loaded = false;
	for _, hook in ipairs(host.api.global_hooks) do world.global_events.remove_handler(hook[1], hook[2]); end
	return assert(world:load(HOST));
end

describe("at shutdown", function ()
	it("Prosody's main thread waits, without blocking, while the sender still has jobs", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("on its way"));
		local runner = world:stop_server();
		assert.equal("waiting", runner.state);
		world:advance(1);
		assert.falsy(world.stopped);
		world:answer(world:last_push(sub), "delivered", { status = 201 });
		world:advance(0.2);
		assert.is_true(world.stopped);
		assert.is_nil(kept(world));
		assert.equal(1, world.metrics[HOST .. "/pushes_delivered"]);
	end);

	it("does not wait when there is nothing to send", function ()
		local world, host = setup();
		host:subscribed_offline("juliet");
		world:stop_server();
		assert.is_true(world.stopped);
		assert.is_nil(kept(world));
	end);

	it("keeps what is left after the grace in one record, sent after the start with the TTL left", function ()
		local world, host = setup({ web_push_ttl = 3600 });
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("not answered in time"));
		local first = world:last_push(sub);
		world:stop_server();
		world:advance(2.9);
		assert.falsy(world.stopped);
		world:advance(0.3);
		assert.is_true(world.stopped);
		assert.equal("exported", first.final);
		assert.equal(1, #kept(world));
		assert.equal(1, world:store(HOST, "web_push_pending").writes);

		world:advance(600);
		start_again(world, host);
		local resumed, n = world:last_push(sub);
		assert.equal(2, n);
		assert.is_true(resumed.resumed);
		assert.same(first.notification, resumed.notification);
		assert.truthy(resumed.job.ttl <= 3600 - 600 and resumed.job.ttl >= 3600 - 605, tostring(resumed.job.ttl));
		assert.is_nil(kept(world));
		-- Its result is handled as any other.
		world:answer(resumed, "gone", { status = 410 });
		assert.is_nil(world:stored("juliet", sub));
	end);

	it("sends what waits here (coalesced, paced) to the sender first", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		host:offline("juliet", to_juliet("two")); -- waits for the first
		world:stop_server();
		assert.equal(2, #world:pushes_for(sub));
		world:advance(5);
		assert.equal(2, #kept(world));
	end);

	it("counts and logs what expired meanwhile, and what is no longer subscribed", function ()
		local world, host = setup({ web_push_ttl = 60 });
		local sub = host:subscribed_offline("juliet");
		local gone = host:subscribed_offline("romeo");
		host:offline("juliet", to_juliet("too old"));
		host:offline("romeo", standin.message(standin.JULIET, "romeo@" .. HOST, "to a deleted account"));
		world:stop_server();
		world:advance(5);
		assert.equal(2, #kept(world));
		world:purge("romeo");
		world:advance(120);
		start_again(world, host);
		assert.equal(1, #world:pushes_for(sub));
		assert.equal(1, #world:pushes_for(gone));
		assert.equal(1, world.metrics[HOST .. "/pushes_expired"]);
		assert.equal(1, #world:log_lines("Gave up 2 pending push", "warn"));
		assert.is_nil(kept(world));
	end);

	it("exports at once outside Prosody's main thread runner", function ()
		local world, host = setup();
		host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("x"));
		world:fire_global("server-stopping", { reason = "test" });
		assert.equal(1, #kept(world));
	end);

	it("is the only time storage is written for pending pushes", function ()
		local world, host = setup({ web_push_min_interval = 0, web_push_max_pushes_per_minute = 0 });
		local sub = host:subscribed_offline("juliet");
		for i = 1, 20 do
			host:offline("juliet", to_juliet("m" .. i));
			world:answer(world:last_push(sub), i % 2 == 0 and "delivered" or "failed", { status = 500 });
			world:advance(1);
		end
		assert.equal(0, world:store(HOST, "web_push_pending").writes);
		assert.equal(0, world:store(HOST, "web_push_pending").reads - 1); -- read once, at load
	end);
end);

describe("a module reload", function ()
	it("hands the pending pushes over in memory, and loses nothing", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		host:offline("juliet", to_juliet("two")); -- coalesced, waiting
		local old_sender = host:sender();
		host = assert(host:reload());
		assert.is_true(old_sender.closed);
		assert.is_nil(kept(world));
		assert.equal(0, world:store(HOST, "web_push_pending").writes);
		local new_sender = host:sender();
		assert.equal(2, #new_sender.jobs);
		for _, record in ipairs(new_sender.jobs) do assert.is_true(record.resumed); end
		-- The new module handles their results.
		world:answer(new_sender.jobs[1], "failed", { status = 400 });
		assert.equal(1, world:stored("juliet", sub).errors);
		world:answer(new_sender.jobs[2], "delivered", { status = 201 });
		assert.equal(0, world:stored("juliet", sub).errors);
		assert.equal(4, #world:pushes_for(sub));
	end);

	it("keeps what a plain unload leaves for the next load", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		host:unload();
		assert.equal(1, #kept(world));
		assert(world:load(HOST));
		assert.equal(2, #world:pushes_for(sub));
		assert.is_nil(kept(world));
	end);
end);
