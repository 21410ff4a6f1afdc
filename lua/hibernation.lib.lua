-- What a session holds for push (session.web_push): the subscriptions tied to it (the newest
-- session that enabled one), what a hibernated session pushes, the hibernation extended up to
-- push_max_hibernation_timeout until its first important push, and the burst of stanzas a silent
-- session did not acknowledge (smacks-ack-delayed), pushed once a moment later.
--
-- A hibernated session pushes every important stanza queued to it, coalesced and paced by the
-- schedule, until it ends; mod_cloud_notify pushes once per hibernation instead. That rule suits
-- a phone app, which wakes on the first push and resumes the stream itself; a browser's service
-- worker cannot resume the closed tab's stream, so after one notification the user would hear
-- nothing more until the session timed out. After the first important push mod_smacks' own
-- hibernation timeout applies again (the session is no longer kept longer for push's sake).
--
-- session.web_push = { endpoints = { [endpoint] = true }, hibernation = { any =, important = },
--   extended = { dog =, timeout =, callback = }, batch = { stanza, ... }, batch_timer = }
-- Fields of our own only: mod_cloud_notify may work on the same session.

local watchdog = require "util.watchdog";

-- Stanzas of one burst to a silent session make one push after this many seconds.
local BATCH_DELAY = 1;

-- options: subscriptions, notices, schedule, timers, activity (back: the user is on the client
-- again), max_hibernation (seconds).
local function new(options)
	local subscriptions, notices, schedule, timers = options.subscriptions, options.notices, options.schedule, options.timers;
	local activity = options.activity;
	local max_hibernation = options.max_hibernation;
	local host_sessions = prosody.hosts[module.host].sessions;

	local function sessions_of(user)
		local account = host_sessions[user];
		return account and account.sessions or {};
	end

	-- mod_smacks of 13 checks that the watchdog calling back is the session's current one, so there
	-- the watchdog keeps its identity and only gets a longer timeout; 0.12's watchdog cannot change
	-- its timeout, so there it is replaced by one that calls the original callback.
	local function extend(session, s)
		local dog = session.hibernating_watchdog;
		if s.extended or not dog or max_hibernation <= 0 then return; end
		local original = tonumber(dog.timeout);
		if not original or original >= max_hibernation then return; end
		if dog.timer_id ~= nil then -- util.watchdog of 13: reset(new_timeout)
			s.extended = { dog = dog, timeout = original };
			dog:reset(max_hibernation);
		elseif dog.last_reset ~= nil then -- util.watchdog of 0.12
			local callback = dog.callback;
			dog:cancel();
			local longer = watchdog.new(max_hibernation, function (this)
				return callback(this);
			end);
			session.hibernating_watchdog = longer;
			s.extended = { dog = longer, timeout = original, callback = callback };
		else
			return;
		end
		session.log("debug", "Hibernation extended to %ds for push notifications", max_hibernation);
	end

	-- Back to mod_smacks' own timeout, counted from now. Leaves a watchdog alone that someone else
	-- (mod_smacks resuming, mod_cloud_notify) has replaced in between.
	local function restore(session, s)
		local e = s.extended;
		if not e then return; end
		s.extended = nil;
		if session.hibernating_watchdog ~= e.dog then return; end
		if e.callback then
			e.dog:cancel();
			session.hibernating_watchdog = watchdog.new(e.timeout, e.callback);
		else
			e.dog:reset(e.timeout);
		end
	end

	local function drop_batch(s)
		timers.cancel(s.batch_timer);
		s.batch_timer, s.batch = nil, nil;
	end

	local function release(session, s)
		drop_batch(s);
		restore(session, s);
	end

	-- The subscription is no longer tied to any session of the account.
	local function untie(user, endpoint)
		for _, session in pairs(sessions_of(user)) do
			local s = session.web_push;
			if s and s.endpoints[endpoint] then
				s.endpoints[endpoint] = nil;
				if next(s.endpoints) == nil then
					release(session, s);
					session.web_push = nil;
				end
			end
		end
	end

	local function tie(session, endpoint)
		untie(session.username, endpoint);
		local s = session.web_push;
		if not s then
			s = { endpoints = {} };
			session.web_push = s;
		end
		s.endpoints[endpoint] = true;
		activity.back(session.username, { [endpoint] = true });
	end

	local function is_tied(session, endpoint)
		local s = session.web_push;
		return s ~= nil and s.endpoints[endpoint] == true;
	end

	-- What an archived stanza does not push to: the subscriptions tied to a session of the account,
	-- which get its stanzas through smacks events (nil when none is tied). A call rings on all.
	local function tied_unless_call(user, notice)
		if notice.call then return nil; end
		local tied;
		for _, session in pairs(sessions_of(user)) do
			local s = session.web_push;
			if s then
				tied = tied or {};
				for endpoint in pairs(s.endpoints) do tied[endpoint] = true; end
			end
		end
		return tied;
	end

	-- Every important stanza pushes; one that is not (web_push_important_only = false) only while
	-- nothing was pushed in this hibernation yet.
	local function allowed(hibernation, notice)
		return notice.important or not hibernation.any;
	end

	local function pushed(session, s, hibernation, important)
		hibernation.any = true;
		if important then
			hibernation.important = true;
			restore(session, s);
		end
	end

	-- Stanzas queued for one session, to the subscriptions tied to it: one notice per conversation
	-- (a burst to several conversations makes a notification for each).
	local function push_session(session, s, stanzas)
		local user = session.username;
		local entry = subscriptions.get(user);
		if not entry or entry.disabled then return; end
		local account = entry.account;
		local described = {};
		for i = 1, #stanzas do
			local stanza = stanzas[i];
			local notice = type(stanza) == "table" and stanza.name and notices.of(stanza, account, user);
			if notice then
				described[#described + 1] = { stanza = stanza, notice = notice, archive_id = notices.archive_id(stanza, account) };
			end
		end
		if not described[1] then return; end
		local hibernation = session.hibernating and s.hibernation;
		local any, important = false, false;
		for endpoint in pairs(s.endpoints) do
			local sub = entry.subs[endpoint];
			if sub then
				local by_conversation = {}; -- in order of arrival
				for _, d in ipairs(described) do
					if schedule.first_time(d.stanza, d.archive_id, sub.ref) then
						notices.fold(by_conversation, d.notice);
					end
				end
				for _, notice in ipairs(by_conversation) do
					if not (hibernation and not allowed(hibernation, notice)) and schedule.offer(sub, notice) then
						any, important = true, important or notice.important;
					end
				end
			end
		end
		if hibernation and any then pushed(session, s, hibernation, important); end
	end

	local function pushable(session)
		local s = session.web_push;
		if s and next(s.endpoints) then return s; end
	end

	-- smacks-hibernation-start: the unacked queue.
	local function started(session, queue)
		local s = pushable(session);
		if not s then return; end
		s.hibernation = {};
		extend(session, s);
		push_session(session, s, queue or {});
	end

	-- smacks-hibernation-stanza-queued
	local function queued(session, stanza)
		local s = pushable(session);
		if not s or not stanza then return; end
		s.hibernation = s.hibernation or {};
		push_session(session, s, { stanza });
	end

	-- smacks-hibernation-end: resumed; mod_smacks let its watchdog go. The user is back on this
	-- client: what it had unread is theirs to see now.
	local function ended(session)
		local s = session.web_push;
		if not s then return; end
		s.hibernation, s.extended = nil, nil;
		drop_batch(s);
		activity.back(session.username, s.endpoints);
	end

	-- smacks-ack-delayed: a live session that does not acknowledge; one push for the burst.
	local function ack_delayed(session, stanza, queue)
		local s = pushable(session);
		if not s then return; end
		local batch = s.batch;
		if not batch then
			batch = {};
			s.batch = batch;
			s.batch_timer = timers.after(BATCH_DELAY, function ()
				if s.batch == batch then s.batch, s.batch_timer = nil, nil; end
				if session.destroyed or session.web_push ~= s then return; end
				push_session(session, s, batch);
			end);
		end
		if stanza then
			batch[#batch + 1] = stanza;
		elseif type(queue) == "table" then
			for _, queued_stanza in ipairs(queue) do batch[#batch + 1] = queued_stanza; end
		end
	end

	-- resource-unbind
	local function unbound(session)
		local s = session.web_push;
		if s then drop_batch(s); end
	end

	local function each_session(f)
		for _, account in pairs(host_sessions) do
			for _, session in pairs(account.sessions or {}) do
				local s = session.web_push;
				if s then f(session, s); end
			end
		end
	end

	-- After a reload, sessions keep their ties (plain data); hibernating ones get their extension
	-- back unless they already had their push.
	local function resume_after_reload()
		each_session(function (session, s)
			if session.hibernating and not (s.hibernation and s.hibernation.important) then
				extend(session, s);
			end
		end);
	end

	local function stop()
		each_session(release);
	end

	return {
		tie = tie, untie = untie, is_tied = is_tied, tied_unless_call = tied_unless_call,
		started = started, queued = queued, ended = ended, ack_delayed = ack_delayed, unbound = unbound,
		resume_after_reload = resume_after_reload, stop = stop,
	};
end

return { new = new };
