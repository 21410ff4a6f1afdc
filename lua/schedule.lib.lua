-- When a notice goes to a subscription, and handing it to the native sender: at most once per
-- stanza and subscription, nothing for a conversation the user is active in elsewhere
-- (activity.lib), one job out per subscription at a time, what comes meanwhile merged into one
-- waiting notice per conversation (each conversation is a notification of its own), paced
-- (web_push_min_interval per subscription, a token bucket of web_push_max_pushes_per_minute per
-- account), then offered to web_push/push handlers. A call rings at once, whatever waits. A group
-- chat message that is only counted adds to the message-count of the subscription's next push.
-- Retries, the TTL left and fitting the payload to its size limit are the sender's.
--
-- A flow is what is under way for one subscription: { ref, user, endpoint, account, in_flight
-- (its jobs in the sender), waiting (notices, one per conversation, oldest first), timer,
-- dropped }. It exists only while one of these does.

local cache = require "util.cache";

-- Archive ids seen are kept in two generations of up to this many, the older dropped whole when
-- the newer is full: removing ids one by one leaves dead nodes in a Lua table's collision chains
-- until it is rehashed, and lookups then walk long chains.
local SEEN_GENERATION = 2048;
local PACE_CACHE_SIZE = 10000;

-- options: sender, subscriptions, notices, timers, results (sent, not_sent), activity (quiet,
-- add_unread, badge), now (monotonic seconds), ttl, min_interval, per_minute.
local function new(options)
	local sender, subscriptions, notices, timers, results = options.sender, options.subscriptions,
		options.notices, options.timers, options.results;
	local activity = options.activity;
	local now, ttl, min_interval, per_minute = options.now, options.ttl, options.min_interval, options.per_minute;
	local host_events = prosody.hosts[module.host].events;
	local label = subscriptions.label;

	local flows = {}; -- ref -> flow
	local jobs = {}; -- sender job id -> { flow =, done = }
	-- Messages only counted, per subscription and conversation, until its next push.
	local counted = cache.new(PACE_CACHE_SIZE); -- ref -> { [conversation] = n }

	-- Pacing, per account: { tokens =, stamp =, last = { [endpoint] = when it was last pushed } }.
	local pace = cache.new(PACE_CACHE_SIZE);
	local rate = per_minute / 60;

	local function tokens_at(p, t)
		return math.min(per_minute, p.tokens + (t - p.stamp) * rate);
	end

	-- Seconds until the flow may push again.
	local function wait_for(flow, t)
		local p = pace:get(flow.user);
		if not p then return 0; end
		local last = p.last[flow.endpoint];
		local wait = last and (last + min_interval - t) or 0;
		if per_minute > 0 then
			local tokens = tokens_at(p, t);
			if tokens < 1 then wait = math.max(wait, (1 - tokens) / rate); end
		end
		return wait;
	end

	local function take_turn(flow, t)
		local p = pace:get(flow.user);
		if not p then
			p = { tokens = per_minute, stamp = t, last = {} };
			pace:set(flow.user, p);
		end
		if per_minute > 0 then
			p.tokens, p.stamp = tokens_at(p, t) - 1, t;
		end
		p.last[flow.endpoint] = t;
	end

	-- At most once per stanza and subscription: by the stanza object (smacks hands the same object
	-- to every event about it) and by its archive id (MAM and delivery see different copies). Both
	-- remember a ref, or a set of refs when a stanza goes to several: the usual case (one
	-- subscription) makes no table.
	local seen, seen_older, seen_count = {}, {}, 0; -- archive id -> ref or set of refs

	local function add_ref(map, id, ref)
		local had = map[id];
		if had == nil then
			map[id] = ref;
		elseif had == ref then
			return false;
		elseif type(had) == "string" then
			map[id] = { [had] = true, [ref] = true };
		elseif had[ref] then
			return false;
		else
			had[ref] = true;
		end
		return true;
	end

	local function holds(map, id, ref)
		local had = map[id];
		return had == ref or (type(had) == "table" and had[ref] == true);
	end

	local function first_time(stanza, archive_id, ref)
		-- The mark sits on the stanza itself, as mod_cloud_notify's does: a weak-keyed table of
		-- stanzas would cost the collector a pass over all its entries in every cycle.
		if not add_ref(stanza, "_web_push", ref) then return false; end
		if not archive_id then return true; end
		if holds(seen_older, archive_id, ref) then return false; end
		if seen[archive_id] == nil then
			if seen_count >= SEEN_GENERATION then
				seen_older, seen, seen_count = seen, {}, 0;
			end
			seen_count = seen_count + 1;
		end
		return add_ref(seen, archive_id, ref);
	end

	local function release_if_idle(flow)
		if flow.in_flight == 0 and not (flow.waiting or flow.timer) and flows[flow.ref] == flow then
			flows[flow.ref] = nil;
		end
	end

	local function count(ref, conversation, n)
		local counts = counted:get(ref);
		if not counts then
			counts = {};
			counted:set(ref, counts);
		end
		local key = conversation or "";
		counts[key] = (counts[key] or 0) + n;
	end

	-- What was only counted since the last push, taken for the next one.
	local function take_counted(ref)
		local counts = counted:get(ref);
		if not counts then return 0; end
		counted:set(ref, nil);
		local total = 0;
		for _, n in pairs(counts) do total = total + n; end
		return total;
	end

	-- When no web_push/push handler can keep the payload table, one table serves every push:
	-- sender:push encodes it before it returns.
	local scratch = {};

	local function send(flow, notice)
		local entry = subscriptions.get(flow.user);
		local sub = entry and not entry.disabled and entry.subs[flow.endpoint];
		if not sub then return release_if_idle(flow); end
		local account = flow.account;
		local listened = host_events.get_handlers("web_push/push") ~= nil;
		local payload = notices.payload(account, notice, not listened and scratch or nil, take_counted(flow.ref),
			activity.badge(flow.ref));
		local urgency = notices.urgency(notice);
		if listened then -- the event only when someone listens
			local event = {
				username = flow.user, account = account, endpoint = flow.endpoint, payload = payload,
				important = notice.important, urgency = urgency, stanza = notice.stanza,
			};
			if module:fire_event("web_push/push", event) then
				module:log("debug", "Push to %s of %s vetoed by %s", label(flow.endpoint), account, event.reason or "an event handler");
				return release_if_idle(flow);
			end
			payload = event.payload;
			if notices.valid_urgency(event.urgency) then urgency = event.urgency; end
		end
		local t = now();
		take_turn(flow, t);
		local ok, id, err = pcall(sender.push, sender, account, flow.endpoint, sub.p256dh, sub.auth, payload, ttl,
			urgency, notice.conversation);
		if not (ok and id) then
			results.not_sent(account, flow.endpoint, ok and err or id);
			return release_if_idle(flow);
		end
		jobs[id] = { flow = flow, done = notice.done };
		flow.in_flight = flow.in_flight + 1;
		results.sent();
	end

	-- The oldest waiting notice goes when the flow has no job out and its pace allows; then the
	-- next, and so on.
	local function arm(flow)
		if flow.dropped or flow.in_flight > 0 or flow.timer then return; end
		if not flow.waiting then return release_if_idle(flow); end
		flow.timer = timers.after(math.max(wait_for(flow, now()), 0.001), function ()
			flow.timer = nil;
			if flow.dropped or flow.in_flight > 0 then return; end
			if wait_for(flow, now()) > 0 then return arm(flow); end
			local waiting = flow.waiting;
			local notice = waiting and table.remove(waiting, 1);
			if waiting and not waiting[1] then flow.waiting = nil; end
			if notice then send(flow, notice); end
			arm(flow); -- nothing went out (vetoed, refused): the next one, or the flow ends
		end);
	end

	-- A notice waits, merged into what waits for its conversation.
	local function enqueue(flow, notice)
		local waiting = flow.waiting;
		if not waiting then
			waiting = {};
			flow.waiting = waiting;
		end
		notices.fold(waiting, notice);
	end

	local function flow_of(sub)
		local flow = flows[sub.ref];
		if not flow then
			flow = { ref = sub.ref, user = sub.user, endpoint = sub.endpoint, account = sub.account, in_flight = 0 };
			flows[sub.ref] = flow;
		end
		return flow;
	end

	-- A notice for a subscription: sent now, or merged into what waits, or only counted. Returns
	-- true when it is to be pushed.
	local function offer(sub, notice)
		local conversation = notice.conversation;
		if conversation and not notice.call and activity.quiet(sub, conversation) then return false; end
		if notice.important then activity.add_unread(sub, conversation, notice.count); end
		if notice.silent then
			count(sub.ref, conversation, notice.count);
			return false;
		end
		local fresh = flows[sub.ref] == nil;
		local flow = flow_of(sub);
		if notice.call or (fresh and wait_for(flow, now()) <= 0) then
			send(flow, notice);
			return true;
		end
		enqueue(flow, notice);
		arm(flow);
		return true;
	end

	-- A result came for job `id`: its flow goes on. Returns the job's user, endpoint and account,
	-- or nil when the job is unknown or its subscription was dropped meanwhile.
	local function finished(id)
		local job = jobs[id];
		if not job then return nil; end
		jobs[id] = nil;
		local flow = job.flow;
		flow.in_flight = flow.in_flight - 1;
		if flow.dropped then return nil; end
		if job.done then job.done(); end
		arm(flow);
		return flow.user, flow.endpoint, flow.account;
	end

	local function stop_flow(flow)
		flow.dropped = true;
		timers.cancel(flow.timer);
		flow.timer, flow.waiting = nil, nil;
		if flows[flow.ref] == flow then flows[flow.ref] = nil; end
	end

	-- Nothing more for one subscription: what waits is dropped, and its jobs in the sender are
	-- cancelled (their results are then nobody's business).
	local function drop(user, endpoint)
		local ref = subscriptions.ref(user, endpoint);
		local flow = flows[ref];
		if flow then stop_flow(flow); end
		counted:set(ref, nil);
		pcall(sender.cancel, sender, user .. "@" .. module.host, endpoint);
	end

	-- The user read a conversation elsewhere: what waits to be pushed about it to this subscription
	-- goes, here and in the sender (a job in flight still arrives).
	local function drop_conversation(sub, conversation)
		local flow = flows[sub.ref];
		local waiting = flow and flow.waiting;
		if waiting then
			for i = #waiting, 1, -1 do
				if waiting[i].conversation == conversation then table.remove(waiting, i); end
			end
			if not waiting[1] then
				flow.waiting = nil;
				timers.cancel(flow.timer);
				flow.timer = nil;
				release_if_idle(flow);
			end
		end
		local counts = counted:get(sub.ref);
		if counts then counts[conversation] = nil; end
		-- Only a flow with jobs out has any in the sender: the user's every message costs no call.
		if flow and flow.in_flight > 0 then
			pcall(sender.cancel, sender, sub.account, sub.endpoint, conversation);
		end
	end

	-- Nothing more for an account (deleted or disabled): its flows, its jobs, its pace.
	local function drop_account(user)
		for _, flow in pairs(flows) do
			if flow.user == user then stop_flow(flow); end
		end
		pace:set(user, nil);
		pcall(sender.cancel, sender, user .. "@" .. module.host);
	end

	-- Every waiting notice goes to the sender now, pace or not (shutdown, reload).
	local function flush()
		local pending = {};
		for _, flow in pairs(flows) do
			if flow.waiting and not flow.dropped then pending[#pending + 1] = flow; end
		end
		for _, flow in ipairs(pending) do
			local waiting = flow.waiting;
			timers.cancel(flow.timer);
			flow.timer, flow.waiting = nil, nil;
			for _, notice in ipairs(waiting) do send(flow, notice); end
		end
	end

	-- A job the sender took back after a restart or reload, for a subscription as stored now.
	local function adopt(id, sub)
		local flow = flow_of(sub);
		jobs[id] = { flow = flow };
		flow.in_flight = flow.in_flight + 1;
	end

	-- One stanza to an account's subscriptions, each at most once; skip(user, notice), when given,
	-- is asked only for a stanza that pushes, and names the endpoints to leave out (or nil).
	local function push_stanza(user, stanza, archive_id, skip)
		local entry = subscriptions.subscribed(user);
		if not entry or entry.disabled then return; end
		local account = entry.account;
		local notice = notices.of(stanza, account, user);
		if not notice then return; end
		archive_id = archive_id or notices.archive_id(stanza, account);
		local skipped = skip and skip(user, notice);
		for endpoint, sub in pairs(entry.subs) do
			if not (skipped and skipped[endpoint]) and first_time(stanza, archive_id, sub.ref) then
				offer(sub, notice);
			end
		end
	end

	-- A push not caused by a stanza, to every subscription of the account.
	local function ping(user)
		local entry = subscriptions.get(user);
		if not entry or entry.disabled then return; end
		local notice;
		for _, sub in pairs(entry.subs) do
			notice = notice or notices.ping();
			offer(sub, notice);
		end
	end

	local function stop()
		for _, flow in pairs(flows) do stop_flow(flow); end
		flows, jobs = {}, {};
		counted = cache.new(PACE_CACHE_SIZE);
	end

	return {
		offer = offer, first_time = first_time, push_stanza = push_stanza, ping = ping,
		finished = finished, drop = drop, drop_conversation = drop_conversation, drop_account = drop_account,
		flush = flush, adopt = adopt, stop = stop,
	};
end

return { new = new };
