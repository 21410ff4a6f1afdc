-- Subscriptions: one keyval record per account in store "web_push",
--   { [endpoint] = { p256dh =, auth =, enabled_at =, errors = } },
-- cached per account so that a push never reads storage.
--
-- What other libs read (never write): get(user) gives an account's entry (subscribed(user) the
-- same, only when it has subscriptions)
--   { user =, account = "user@host", disabled = true|nil, subs = { [endpoint] = sub } },
--   sub = { user =, account =, endpoint =, p256dh =, auth =, errors =, ref = },
-- holding only records that can be pushed to (a damaged record stays stored, untouched). `ref` is
-- the subscription's name in the tables of the push path ("user\0endpoint"), made once per entry:
-- every string made per push is garbage that Prosody's collector pays for.
--
-- `change` is the one write path, and so the one place where a subscription is forgotten. It
-- reads the record from storage, never from the cache: the account may have been deleted by
-- another process (0.12's prosodyctl deluser), whose purge the cache cannot know about.

local cache = require "util.cache";
local hashes = require "util.hashes";
local datamanager = require "util.datamanager";
local lfs = require "lfs";
local storagemanager = require "core.storagemanager";
local usermanager = require "core.usermanager";

local CACHE_SIZE = 10000;

-- Prosody 13 can disable an account (registration_delete_grace_period) before deleting it; 0.12
-- knows no disabled accounts.
local function is_enabled(user, host)
	if not usermanager.user_is_enabled then return true; end
	return usermanager.user_is_enabled(user, host);
end

-- 0.12's prosodyctl deletes and registers accounts in a process of its own (13's goes through
-- the shell, into this process, whose events say so).
local changed_elsewhere = prosody.version ~= nil and prosody.version:match("^0%.12") ~= nil;

-- options: store, forgotten(user, endpoint) and renewed(user, endpoint) (what else goes with a
-- forgotten subscription, or with pushes made for the keys a subscription had before).
local function new(options)
	local store = options.store;
	local host = module.host;
	local entries = cache.new(CACHE_SIZE);
	-- With internal storage each account's record is a file, which every write replaces (a new
	-- inode: it is written aside and renamed) and a purge removes, and nothing but this module
	-- writes it: whether it is still the file the cache was made from is one stat call, where
	-- reading it again (on other storage) costs a parse and its garbage.
	local file_backed = changed_elsewhere and select(2, storagemanager.get_driver(host, "web_push")) == "internal";

	-- A short name for a subscription in log lines: the push service's origin and a hash of the
	-- endpoint, whose path is a capability and stays out of logs.
	local labels = cache.new(1000);
	local function label(endpoint)
		local name = labels:get(endpoint);
		if not name then
			local origin = endpoint:match("^(%a[%w+.-]*://[^/?#]+)") or "?";
			name = origin .. "#" .. hashes.sha256(endpoint, true):sub(1, 8);
			labels:set(endpoint, name);
		end
		return name;
	end

	local function ref(user, endpoint)
		return user .. "\0" .. endpoint;
	end

	local function pushable(endpoint, record)
		return type(endpoint) == "string" and type(record) == "table"
			and type(record.p256dh) == "string" and type(record.auth) == "string";
	end

	local function make_entry(user, stored)
		local account = user .. "@" .. host;
		local entry = { user = user, account = account, subs = {} };
		for endpoint, record in pairs(stored) do
			if pushable(endpoint, record) then
				entry.subs[endpoint] = {
					user = user, account = account, endpoint = endpoint, ref = ref(user, endpoint),
					p256dh = record.p256dh, auth = record.auth, errors = tonumber(record.errors) or 0,
				};
			end
		end
		if next(entry.subs) ~= nil and is_enabled(user, host) == false then
			entry.disabled = true;
		end
		return entry;
	end

	-- The entry made of what storage holds now, cached, with what tells later whether the stored
	-- record was replaced or removed behind this process's back.
	local function remember(user, stored)
		local entry = make_entry(user, stored);
		if file_backed and next(entry.subs) ~= nil then
			local path = datamanager.getpath(user, host, "web_push");
			entry.file, entry.inode = path, lfs.attributes(path, "ino");
		end
		entries:set(user, entry);
		return entry;
	end

	local function read(user)
		local stored, err = store:get(user);
		if stored == nil and err ~= nil then
			module:log("error", "Cannot read the push subscriptions of %s: %s", user, err);
			return nil, err;
		end
		return type(stored) == "table" and stored or {};
	end

	-- The account's entry; nil and an error when storage cannot be read.
	local function get(user)
		local entry = entries:get(user);
		if entry then return entry; end
		local stored, err = read(user);
		if not stored then return nil, err; end
		return remember(user, stored);
	end

	-- The account's entry when it has subscriptions, else nil. Most accounts have none: a hook that
	-- only matters to an account with subscriptions asks this before any work of its own.
	local function subscribed(user)
		local entry = get(user);
		if entry and next(entry.subs) ~= nil then return entry; end
	end

	-- The next get(user) reads storage again: the account was deleted, registered again, logged
	-- in, or disabled or enabled.
	local function drop_cached(user)
		entries:set(user, nil);
	end

	-- edit(stored) changes the account's stored record in place and returns true when there is
	-- something to write. Storage first: when it fails nothing changes, here or in the cache.
	-- Then the cache, and for each subscription that is gone from the record its session tie,
	-- its pushes and the web_push/unregistered event (with `reason`). Returns true and the
	-- endpoints forgotten, or nil and an error.
	local function change(user, edit, reason)
		local stored, err = read(user);
		if not stored then return nil, err; end
		local before = {};
		for endpoint, record in pairs(stored) do before[endpoint] = record; end
		if not edit(stored) then
			remember(user, stored);
			return true, {};
		end
		local ok, write_err = store:set(user, next(stored) ~= nil and stored or nil);
		if not ok then
			module:log("error", "Cannot store the push subscriptions of %s: %s", user, tostring(write_err));
			return nil, write_err or "storage failed";
		end
		remember(user, stored);
		local account, forgotten = user .. "@" .. host, {};
		for endpoint, old in pairs(before) do
			local now = stored[endpoint];
			if now == nil then
				if type(endpoint) == "string" then forgotten[#forgotten + 1] = endpoint; end
			elseif pushable(endpoint, old) and pushable(endpoint, now) and (old.p256dh ~= now.p256dh or old.auth ~= now.auth) then
				options.renewed(user, endpoint);
			end
		end
		for _, endpoint in ipairs(forgotten) do
			options.forgotten(user, endpoint);
			module:log("info", "Forgot push subscription %s of %s (%s)", label(endpoint), account, reason);
			-- Another module's handler that fails must not stop the rest of this path (it may run
			-- inside Prosody's account deletion).
			local fired, event_err = pcall(module.fire_event, module, "web_push/unregistered", {
				username = user, account = account, endpoint = endpoint, reason = reason,
			});
			if not fired then
				module:log("error", "A web_push/unregistered handler failed: %s", event_err);
			end
		end
		return true, forgotten;
	end

	-- Stores a subscription (enable); beyond max_devices, the least recently enabled others go.
	local function add(user, endpoint, record, max_devices)
		return change(user, function (stored)
			stored[endpoint] = record;
			local others = {};
			for other, other_record in pairs(stored) do
				if other ~= endpoint then
					local at = type(other_record) == "table" and tonumber(other_record.enabled_at) or 0;
					others[#others + 1] = { endpoint = other, at = at };
				end
			end
			if #others + 1 > max_devices then
				table.sort(others, function (a, b)
					if a.at ~= b.at then return a.at < b.at; end
					return tostring(a.endpoint) < tostring(b.endpoint);
				end);
				for i = 1, #others + 1 - max_devices do stored[others[i].endpoint] = nil; end
			end
			return true;
		end, "device-cap");
	end

	-- Forgets one subscription. True when it was stored (and is now forgotten).
	local function forget(user, endpoint, reason)
		local ok, err_or_forgotten = change(user, function (stored)
			if stored[endpoint] == nil then return false; end
			stored[endpoint] = nil;
			return true;
		end, reason);
		if not ok then return nil, err_or_forgotten; end
		return true, err_or_forgotten[1] ~= nil;
	end

	-- Forgets every subscription of the account.
	local function forget_all(user, reason)
		return change(user, function (stored)
			if next(stored) == nil then return false; end
			for endpoint in pairs(stored) do stored[endpoint] = nil; end
			return true;
		end, reason);
	end

	-- One more push that failed for good, counted in the stored record; at max_errors in a row
	-- the subscription is forgotten. Returns the count (nil when the subscription is not stored).
	local function count_failure(user, endpoint, max_errors)
		local errors;
		change(user, function (stored)
			local record = stored[endpoint];
			if not pushable(endpoint, record) then return false; end
			errors = (tonumber(record.errors) or 0) + 1;
			if errors >= max_errors then
				stored[endpoint] = nil;
			else
				record.errors = errors;
			end
			return true;
		end, "errors");
		return errors;
	end

	-- A push was delivered: the count of failures in a row starts again. Writes only when the
	-- cache says there is something to reset.
	local function clear_failures(user, endpoint)
		local entry = entries:get(user);
		local sub = entry and entry.subs[endpoint];
		if not (sub and sub.errors > 0) then return; end
		change(user, function (stored)
			local record = stored[endpoint];
			if not (type(record) == "table" and (tonumber(record.errors) or 0) > 0) then return false; end
			record.errors = 0;
			return true;
		end);
	end

	-- Whether the entry holds what can be pushed to of the stored record, with the same keys.
	local function holds(entry, stored)
		for endpoint, record in pairs(stored) do
			if pushable(endpoint, record) then
				local sub = entry.subs[endpoint];
				if not (sub and sub.p256dh == record.p256dh and sub.auth == record.auth) then return false; end
			end
		end
		for endpoint in pairs(entry.subs) do
			if not pushable(endpoint, stored[endpoint]) then return false; end
		end
		return true;
	end

	-- Before a push to an account without a session. Where accounts are deleted and registered
	-- by another process, which tells this one nothing, what is cached for such an account may be
	-- the subscriptions of an earlier account of that name, so they are read from storage again.
	-- Accounts without subscriptions are not read again: they are the many, and a new account
	-- of an old name starts without any.
	local function recheck(user)
		if not changed_elsewhere then return; end
		local entry = entries:get(user);
		if not (entry and next(entry.subs) ~= nil) then return; end
		if entry.file then
			if lfs.attributes(entry.file, "ino") ~= entry.inode then
				entries:set(user, nil); -- the next get reads what is there now
			end
			return;
		end
		local stored = read(user);
		if not stored then -- the next get tries again
			entries:set(user, nil);
			return;
		end
		-- The usual answer is "unchanged": then the entry stays, and nothing new is made of it.
		if not holds(entry, stored) then remember(user, stored); end
	end

	return {
		get = get, subscribed = subscribed, drop_cached = drop_cached, recheck = recheck, ref = ref, label = label,
		add = add, forget = forget, forget_all = forget_all,
		count_failure = count_failure, clear_failures = clear_failures,
	};
end

return { new = new };
