-- mod_web_push against a stand-in of Prosody: deleted accounts (in this process, and by 0.12's
-- prosodyctl in another one), accounts registered again, and Prosody 13's disabled accounts.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";

local HOST, JULIET = standin.HOST, standin.JULIET;
local setup, to_juliet = standin.setup, standin.to_juliet;

local function stored_subs(world, user)
	return world:store(HOST, "web_push").data[user or "juliet"];
end

describe("a deleted account", function ()
	it("loses every subscription, in storage and in sessions, with web_push/unregistered", function ()
		local world, host = setup();
		local unregistered = {};
		host.api:hook("web_push/unregistered", function (event) unregistered[#unregistered + 1] = event; end);
		local session, tied = host:subscribed_session("juliet", "phone");
		local _, others = host:subscribed_offline("juliet", 2);
		local romeo = host:subscribed_offline("romeo");
		host:delete_user("juliet");
		assert.is_nil(stored_subs(world));
		assert.truthy(stored_subs(world, "romeo"));
		assert.is_nil(session.web_push);
		assert.equal(3, #unregistered);
		for _, event in ipairs(unregistered) do
			assert.equal("deleted", event.reason);
			assert.equal("juliet", event.username);
		end
		host:offline("juliet", to_juliet("to the old owner"));
		host:fire("cloud-notify-ping", { user = "juliet" });
		world:advance(60);
		for _, sub in ipairs({ tied, others[1], others[2] }) do assert.equal(0, #world:pushes_for(sub)); end
		host:offline("romeo", standin.message(JULIET, "romeo@" .. HOST, "still here"));
		assert.equal(1, #world:pushes_for(romeo));
	end);

	it("gets none of its queued, retrying or coalesced pushes sent", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one")); -- in the sender
		local queued = world:last_push(sub);
		host:offline("juliet", to_juliet("two")); -- coalesced, waiting here
		host:delete_user("juliet");
		assert.equal("cancelled", queued.final);
		assert.same({ account = JULIET }, world.cancels[#world.cancels]);
		world:advance(3600);
		assert.equal(1, #world:pushes_for(sub));
		assert.equal(0, world:task_count());
	end);

	it("leaves nothing that delays the pushes of an account registered again under its name", function ()
		local world, host = setup({ web_push_max_pushes_per_minute = 1 });
		local old = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		world:answer(world:last_push(old), "delivered", { status = 201 });
		host:delete_user("juliet");
		host:register_user("juliet");
		local new = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("for the new owner"));
		assert.equal(1, #world:pushes_for(new));
		world:advance(120);
		assert.equal(1, #world:pushes_for(old));
	end);

	it("on another VirtualHost is none of this host's business", function ()
		local world, host = setup();
		local sub = host:subscribed_offline("juliet");
		host:delete_user("juliet", "elsewhere.example");
		assert.truthy(stored_subs(world));
		host:offline("juliet", to_juliet("hi"));
		assert.equal(1, #world:pushes_for(sub));
	end);
end);

-- Prosody 0.12's `prosodyctl deluser` deletes from another process: storage is purged, and this
-- process hears nothing. Its cache must never be written back over the purge, and is read again
-- when the name is registered again or the account logs in.
describe("an account deleted by another process", function ()
	it("is read from storage again when its name is registered again", function ()
		local world, host = setup();
		local old = host:subscribed_offline("juliet");
		world:purge("juliet");
		host:register_user("juliet");
		host:offline("juliet", to_juliet("for the new owner"));
		world:advance(60);
		assert.equal(0, #world:pushes_for(old));
	end);

	it("is read from storage again before an offline push when its name was registered again there too", function ()
		local world, host = setup();
		local old = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("warms the cache"));
		world:answer(world:last_push(old), "delivered", { status = 201 });
		world:purge("juliet"); -- deleted, and registered again, by prosodyctl: no event here
		host:offline("juliet", to_juliet("for the new owner"));
		world:advance(60);
		assert.equal(1, #world:pushes_for(old));
	end);

	it("is trusted from the cache on Prosody 13, whose prosodyctl goes through this process", function ()
		local world, host = setup({}, { accounts = "13" });
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("warms the cache"));
		world:answer(world:last_push(sub), "delivered", { status = 201 });
		local reads = world:store(HOST, "web_push").reads;
		host:offline("juliet", to_juliet("again"));
		assert.equal(reads, world:store(HOST, "web_push").reads);
	end);

	it("is read from storage again when the account logs in, and its first enable writes only its own", function ()
		local world, host = setup();
		local old = host:subscribed_offline("juliet");
		world:purge("juliet");
		local session = host:session("juliet", "new-browser");
		local new = standin.subscription();
		assert.equal("result", host:enable(session, new).attr.type);
		local subs = stored_subs(world);
		assert.truthy(subs[new.endpoint]);
		assert.is_nil(subs[old.endpoint]);
		host:close(session);
		host:offline("juliet", to_juliet("hi"));
		world:advance(60);
		assert.equal(0, #world:pushes_for(old));
		assert.equal(1, #world:pushes_for(new));
	end);

	it("is read from storage again when the account logs in", function ()
		local world, host = setup();
		local old = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("warms the cache"));
		world:answer(world:last_push(old), "delivered", { status = 201 });
		world:purge("juliet");
		host:close(host:session("juliet", "new-owner"));
		host:offline("juliet", to_juliet("for the new owner"));
		world:advance(60);
		assert.equal(1, #world:pushes_for(old));
	end);

	it("gets nothing written back by a late result of an old push", function ()
		local world, host = setup();
		local old = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		local push = world:last_push(old);
		host:offline("juliet", to_juliet("two"));
		world:purge("juliet");
		local writes = world:store(HOST, "web_push").writes;
		world:answer(push, "failed", { status = 500 });
		world:advance(60);
		assert.is_nil(stored_subs(world));
		assert.equal(writes, world:store(HOST, "web_push").writes);
	end);
end);

describe("a disabled account (Prosody 13)", function ()
	local function setup13(options)
		return setup(options, { accounts = "13" });
	end

	it("is not pushed to, keeps its subscriptions, and is pushed to again once enabled", function ()
		local world, host = setup13();
		local sub = host:subscribed_offline("juliet");
		host:offline("juliet", to_juliet("one"));
		local queued = world:last_push(sub);
		host:disable_user("juliet");
		assert.equal("cancelled", queued.final);
		host:offline("juliet", to_juliet("while disabled"));
		host:fire("cloud-notify-ping", { user = "juliet" });
		world:advance(60);
		assert.equal(1, #world:pushes_for(sub));
		assert.truthy(world:stored("juliet", sub));
		host:enable_user("juliet");
		host:offline("juliet", to_juliet("enabled again"));
		assert.equal(2, #world:pushes_for(sub));
	end);

	it("is not pushed to when it was disabled before the module loaded", function ()
		local world, host = setup13();
		local sub = host:subscribed_offline("juliet");
		world.disabled_accounts[JULIET] = true;
		host = assert(host:reload());
		host:offline("juliet", to_juliet("hi"));
		assert.equal(0, #world:pushes_for(sub));
	end);

	it("stops the pushes of its hibernated sessions", function ()
		local world, host = setup13();
		local session, sub = host:subscribed_session("juliet");
		host:hibernate(session);
		host:disable_user("juliet");
		host:queue(session, to_juliet("queued while disabled"));
		assert.equal(0, #world:pushes_for(sub));
	end);
end);
