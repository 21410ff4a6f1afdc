-- What the push services answered: the sender's final outcome of each job, read through its fd
-- (watched by Prosody's network loop), counted in metrics, logged once, and what it means for the
-- subscription: gone is forgotten, a delivery clears its failures, a push that failed for good
-- counts one failure (push_max_errors in a row and it is forgotten). An expired, refused or
-- cancelled push says nothing about the subscription.

local server = require "net.server";

local POLL_INTERVAL = 0.1; -- seconds, where net.server cannot watch an fd

-- options: sender, subscriptions, max_errors.
local function new(options)
	local sender, subscriptions, max_errors = options.sender, options.subscriptions, options.max_errors;
	local label = subscriptions.label;

	-- Metrics (mod_http_openmetrics shows them).
	local count_sent = module:measure("pushes_sent", "counter");
	local count_delivered = module:measure("pushes_delivered", "counter");
	local count_gone = module:measure("pushes_gone", "counter");
	local count_failed = module:measure("pushes_failed", "counter");
	local count_expired = module:measure("pushes_expired", "counter");
	local count_retried = module:measure("pushes_retried", "counter");
	local latency = module:measure("push_latency", "times", {
		buckets = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };
	});

	local config_problem_logged = {};
	local finished; -- the schedule's: a result ends its job (given to start)

	-- A push that failed for good: refused by the push service (a 4xx other than 404/410), or
	-- failed on the network or with 429/5xx until its attempts or its TTL ran out.
	local function failed(user, endpoint, account, status, detail)
		count_failed(1);
		local errors = subscriptions.count_failure(user, endpoint, max_errors);
		local refused = type(status) == "number" and status >= 400 and status < 500 and status ~= 429;
		local name, verb = label(endpoint), refused and "refused" or "failed";
		local count = errors and (("; error %d of %d"):format(errors, max_errors)
			.. (errors >= max_errors and ", the subscription is dropped" or "")) or "";
		if (status == 400 or status == 401 or status == 403) and not config_problem_logged[status] then
			config_problem_logged[status] = true;
			module:log("warn", "Push service refused a push to %s of %s (%s): this looks like a configuration "
				.. "problem (VAPID key or web_push_vapid_subject)%s", name, account, detail, count);
		else
			module:log("info", "Push to %s of %s %s (%s)%s", name, account, verb, detail, count);
		end
	end

	local function on_result(id, outcome, status, reason, attempts, elapsed)
		local user, endpoint, account = finished(id);
		if not user then return; end
		if type(attempts) == "number" and attempts > 1 then count_retried(attempts - 1); end
		local name = label(endpoint);
		local detail = tostring(reason or outcome) .. (status and (", HTTP " .. tostring(status)) or "");

		if outcome == "delivered" then
			count_delivered(1);
			module:log("debug", "Push to %s of %s delivered (%s, %.3fs)", name, account, detail, tonumber(elapsed) or 0);
			subscriptions.clear_failures(user, endpoint);
		elseif outcome == "gone" then
			count_gone(1);
			module:log("info", "Push subscription %s of %s is gone (%s)", name, account, detail);
			-- When storage fails it stays, and the next push finds out again.
			subscriptions.forget(user, endpoint, "gone");
		elseif outcome == "failed" then
			failed(user, endpoint, account, status, detail);
		elseif outcome == "expired" then
			count_expired(1);
			module:log("warn", "Push to %s of %s given up: its TTL ran out before it could be sent (%s)", name, account, detail);
		elseif outcome == "refused" then
			count_failed(1);
			module:log("debug", "Push to %s of %s not sent: %s", name, account, detail);
		elseif outcome ~= "cancelled" then
			module:log("warn", "Push to %s of %s: unknown outcome %s", name, account, tostring(outcome));
		end
	end

	local function handle(...)
		local ok, err = pcall(on_result, ...);
		if not ok then
			module:log("error", "Handling a push result failed: %s", err);
		end
	end

	local function drain()
		local ok, err = pcall(sender.drain, sender, handle);
		if not ok then
			module:log("error", "Reading push results failed: %s", err);
		end
	end

	local watcher, poller, first_turn;

	-- Starts reading results; finished(id) ends the job in the schedule and names its subscription.
	local function start(schedule_finished)
		finished = schedule_finished;
		if server.watchfd then
			watcher = server.watchfd(sender:fd(), drain);
		else
			module:log("warn", "net.server has no watchfd; polling for push results");
			poller = module:add_timer(POLL_INTERVAL, function ()
				drain();
				return POLL_INTERVAL;
			end);
		end
		-- Prosody 0.12 forks after loading modules (mod_posix daemonizes at server-started), and
		-- the sender's threads stay behind in the parent. The sender brings them back in the
		-- process that serves whenever it is next used; the event loop's first turn is in that
		-- process, so pushes carried over a restart do not wait for the next message to get there.
		first_turn = module:add_timer(0, drain);
	end

	local function stop()
		if watcher then
			if watcher.close then
				watcher:close();
			elseif watcher.setflags then
				watcher:setflags(false, false);
			end
			watcher = nil;
		end
		if poller then poller:stop(); poller = nil; end
		if first_turn then first_turn:stop(); first_turn = nil; end
	end

	-- The schedule handed a job over; or the sender would not take it (queue full, closed).
	local function sent() count_sent(1); end
	local function not_sent(account, endpoint, err)
		count_failed(1);
		module:log("warn", "Push to %s of %s not sent: %s", label(endpoint), account, tostring(err));
	end

	-- Pending pushes carried over a restart or reload and given up: their TTL ran out meanwhile, or
	-- their subscription is no longer there.
	local function given_up(expired, dropped)
		if expired > 0 then count_expired(expired); end
		if expired + dropped > 0 then
			module:log("warn", "Gave up %d pending push(es) carried over: %d expired, %d for subscriptions no longer there",
				expired + dropped, expired, dropped);
		end
	end

	return {
		start = start, stop = stop, latency = latency,
		sent = sent, not_sent = not_sent, given_up = given_up,
	};
end

return { new = new };
