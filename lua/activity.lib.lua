-- What the user does with the account's other clients, as far as pushes care: a conversation where
-- another client was active lately gets no push (web_push_grace), and what the user has not read
-- yet is counted per subscription (the declarative app_badge).
--
-- Active means: a session other than the one tied to a subscription sent a message or a chat
-- marker (XEP-0333 displayed or acknowledged) in the conversation, or published a displayed update
-- for it (XEP-0490). For that subscription, the conversation is then quiet for web_push_grace
-- seconds, what it has unread in the conversation is read, and whatever still waits to be pushed
-- about it is dropped (options.read). The tied session itself does not count: a web client sends
-- markers from the very tab that is being closed.
--
-- Both tables are keyed by the subscription's ref and bounded: losing an entry only means one push
-- that would have been quiet, or a badge counted again from zero.

local cache = require "util.cache";

local CACHE_SIZE = 10000;

-- options: subscriptions, grace (seconds), now (monotonic seconds), tied(session, endpoint) -> true
-- when the subscription is tied to that session, read(sub, conversation) (drop what waits).
local function new(options)
	local subscriptions, grace, now, tied, read = options.subscriptions, options.grace, options.now, options.tied, options.read;
	local quiet_until = cache.new(CACHE_SIZE); -- ref -> { [conversation] = monotonic time }
	local unread = cache.new(CACHE_SIZE); -- ref -> { [conversation] = count }

	local function mark_quiet(ref, conversation, t)
		local quiet = quiet_until:get(ref);
		if not quiet then
			quiet = {};
			quiet_until:set(ref, quiet);
		else
			for other, till in pairs(quiet) do -- what has run out goes, so the table stays small
				if till <= t then quiet[other] = nil; end
			end
		end
		quiet[conversation] = t + grace;
	end

	-- `session` (nil: a client that cannot be named, e.g. the server publishing for the user) of
	-- `user` was active in `conversation`.
	local function seen(user, conversation, session)
		if type(conversation) ~= "string" then return; end
		local entry = subscriptions.subscribed(user);
		if not entry then return; end
		local t = now();
		for endpoint, sub in pairs(entry.subs) do
			if not (session and tied(session, endpoint)) then
				if grace > 0 then mark_quiet(sub.ref, conversation, t); end
				local counts = unread:get(sub.ref);
				if counts then counts[conversation] = nil; end
				read(sub, conversation);
			end
		end
	end

	-- Whether the user is active in the conversation elsewhere than on this subscription's client.
	local function quiet(sub, conversation)
		local q = quiet_until:get(sub.ref);
		local till = q and q[conversation];
		return till ~= nil and till > now();
	end

	-- Messages the subscription's notifications told about (or counted) in a conversation.
	local function add_unread(sub, conversation, n)
		if conversation == nil or n <= 0 then return; end
		local counts = unread:get(sub.ref);
		if not counts then
			counts = {};
			unread:set(sub.ref, counts);
		end
		counts[conversation] = (counts[conversation] or 0) + n;
	end

	-- Everything the subscription has unread.
	local function badge(ref)
		local counts = unread:get(ref);
		if not counts then return 0; end
		local total = 0;
		for _, n in pairs(counts) do total = total + n; end
		return total;
	end

	-- The user is back on the client of these subscriptions (its session resumed, or it enabled
	-- push again): nothing is unread there any more.
	local function back(user, endpoints)
		for endpoint in pairs(endpoints) do
			unread:set(subscriptions.ref(user, endpoint), nil);
		end
	end

	return { seen = seen, quiet = quiet, add_unread = add_unread, badge = badge, back = back };
end

return { new = new };
