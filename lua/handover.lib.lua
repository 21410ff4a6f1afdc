-- Pending pushes outlive a restart or a reload. At shutdown, what waits here goes to the sender,
-- and Prosody's main thread waits (asynchronously, never blocking, at most GRACE seconds) while
-- the sender still has jobs queued or in flight; what is left is exported and kept in one record
-- of store "web_push_pending", written only then (never per push), and resumed at the next load
-- with the TTL it has left. A module reload hands the exported jobs over in memory instead
-- (module.save, module.restore). What is given up is counted and logged.

local async = require "util.async";
local jid = require "util.jid";

local GRACE = 3; -- seconds: well inside the time prosodyctl stop waits
local POLL_INTERVAL = 0.1;

-- options: sender, store, schedule, subscriptions, results, timers, now (monotonic seconds).
local function new(options)
	local sender, store, schedule, subscriptions = options.sender, options.store, options.schedule, options.subscriptions;
	local results, timers, now = options.results, options.timers, options.now;
	local release_waiter; -- while the main thread waits: lets it go on

	local function busy()
		local ok, stats = pcall(sender.stats, sender);
		if not (ok and type(stats) == "table") then return false; end
		return (tonumber(stats.queued) or 0) + (tonumber(stats.in_flight) or 0) > 0;
	end

	-- Every job the sender has not finished, taken from it.
	local function export()
		local ok, jobs = pcall(sender.export, sender);
		if not ok then
			module:log("error", "Cannot take the pending pushes from the sender: %s", jobs);
			return {};
		end
		return type(jobs) == "table" and jobs or {};
	end

	-- Keeps jobs for the next load, after those already kept.
	local function stash(jobs)
		if #jobs == 0 then return; end
		local kept, err = store:get(nil);
		local list = {};
		if kept == nil and err ~= nil then
			module:log("error", "Cannot read the pending pushes kept in storage: %s", err);
		elseif type(kept) == "table" and type(kept.jobs) == "table" then
			for _, job in ipairs(kept.jobs) do list[#list + 1] = job; end
		end
		for _, job in ipairs(jobs) do list[#list + 1] = job; end
		local ok, write_err = store:set(nil, { jobs = list });
		if ok then
			module:log("info", "Kept %d pending push(es) in storage, to be sent after the restart", #jobs);
		else
			module:log("error", "Cannot keep %d pending push(es) in storage, they are lost: %s", #jobs, tostring(write_err));
		end
	end

	local function wait_until_idle()
		local wait, done = async.waiter();
		local deadline = now() + GRACE;
		local function poll()
			if release_waiter and busy() and now() < deadline then
				timers.after(POLL_INTERVAL, poll);
			elseif release_waiter then
				release_waiter = nil;
				done();
			end
		end
		release_waiter = done;
		timers.after(POLL_INTERVAL, poll);
		module:log("info", "Waiting up to %ds for pending pushes to go out", GRACE);
		wait();
	end

	-- server-stopping
	local function stopping()
		schedule.flush();
		if busy() and async.ready() then wait_until_idle(); end
		stash(export());
	end

	-- Jobs exported by a previous run, queued again; those whose subscription is no longer stored
	-- with the same keys (or whose account is disabled) are dropped.
	local function resume(jobs)
		local resumed, expired, dropped = 0, 0, 0;
		for _, job in ipairs(type(jobs) == "table" and jobs or {}) do
			local user, job_host = jid.split(type(job) == "table" and job.account or nil);
			local entry = user and job_host == module.host and subscriptions.get(user);
			local sub = entry and not entry.disabled and entry.subs[job.endpoint];
			if not (sub and sub.p256dh == job.p256dh and sub.auth == job.auth) then
				dropped = dropped + 1;
			else
				local ok, id, err = pcall(sender.resume, sender, job);
				if ok and id then
					schedule.adopt(id, sub);
					resumed = resumed + 1;
				elseif ok and err == "expired" then
					expired = expired + 1;
				else
					dropped = dropped + 1;
					module:log("warn", "Cannot queue a pending push to %s of %s again: %s", subscriptions.label(sub.endpoint),
						sub.account, tostring(ok and err or id));
				end
			end
		end
		if resumed > 0 then module:log("info", "Queued %d pending push(es) again", resumed); end
		results.given_up(expired, dropped);
	end

	-- At load: what the last run kept, queued again, and the record deleted.
	local function resume_kept()
		local kept, err = store:get(nil);
		if kept == nil then
			if err ~= nil then module:log("error", "Cannot read the pending pushes kept in storage: %s", err); end
			return;
		end
		local ok, delete_err = store:set(nil, nil);
		if not ok then
			module:log("error", "Cannot delete the pending pushes kept in storage (they may be sent twice): %s",
				tostring(delete_err));
		end
		resume(type(kept) == "table" and kept.jobs);
	end

	-- module.save: what waits goes to the sender, and every job it has is handed over.
	local function save()
		schedule.flush();
		return { jobs = export() };
	end

	-- module.restore
	local function restore(saved)
		resume(type(saved) == "table" and saved.jobs);
	end

	-- Unload: what waits goes to the sender, and what the sender still has is kept in storage
	-- (nothing is left after save or shutdown).
	local function stop()
		if release_waiter then
			local done = release_waiter;
			release_waiter = nil;
			done();
		end
		schedule.flush();
		stash(export());
	end

	return { stopping = stopping, resume_kept = resume_kept, save = save, restore = restore, stop = stop };
end

return { new = new };
