-- A stand-in of the parts of Prosody that mod_web_push touches, for busted specs.
--
-- Real parts: Prosody's own util modules (util.stanza, util.events, util.cache, util.json,
-- util.hashes, util.watchdog, util.async...) from /usr/lib/prosody, and the native library built
-- by `make` (keys, endpoint and subscription checks, encryption, fitting payloads) -- only its
-- sender is replaced, by one that follows doc/native-api.md (fake_sender.lua: final outcomes,
-- cancel, export, resume) and whose answers the spec chooses. Stand-ins: the module API (core/moduleapi.lua, module:require included), global
-- events, a manual clock that drives every timer, keyval storage in memory that can be made to
-- fail, sessions, accounts (usermanager, 0.12's or 13's with disabled accounts), mod_smacks'
-- hibernation watchdog, net.server's watchfd, and mod_pep (pep.lua: real util.pubsub services,
-- through module:depends, handle_items and hook_object_event).
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;

local st = require "util.stanza";
local jid_lib = require "util.jid";
local events_lib = require "util.events";
local pep_lib = require "pep";
local json = require "util.json";
local base64 = require "util.encodings".base64;
local random = require "util.random";
local xml = require "util.xml";

local M = {};

M.MODULE_FILE = "lua/mod_web_push.lua";
-- module:require loads <name>.lib.lua from the module's folder, as Prosody does.
M.MODULE_DIR = M.MODULE_FILE:match("^(.*/)") or "./";
M.NATIVE_FILE = "build/mod_web_push/web_push.so";
M.PROSODY13_WATCHDOG = ".cache/prosody13/root/usr/lib/prosody/util/watchdog.lua";
M.NS = "urn:xmpp:webpush:0";
-- The accounts most specs use.
M.HOST = "example.org";
M.JULIET = "juliet@example.org";
M.ROMEO = "romeo@montague.lit/orchard";

local real_native;
function M.native()
	if not real_native then
		local open = package.loadlib(M.NATIVE_FILE, "luaopen_web_push");
		assert(open, M.NATIVE_FILE .. " is missing: run make first");
		real_native = open();
	end
	return real_native;
end

function M.b64url(raw)
	return (base64.encode(raw):gsub("%+", "-"):gsub("/", "_"):gsub("=", ""));
end

function M.parse(text)
	return assert(xml.parse(text));
end

-- The bounds doc/native-api.md gives `limits`: the specs hold the module (which reads the native
-- library's own) and the fake sender to them.
M.LIMITS = { workers = { 1, 64 }, queue_size = { 1, 1000000 }, timeout = { 0.1, 600 }, ttl = { 0, 2592000 }, payload = 3000 };

-- The native library's test-only functions.
function M.testing()
	return M.native().testing;
end

local function deep_copy(value)
	if type(value) ~= "table" then return value; end
	local copy = {};
	for k, v in pairs(value) do copy[deep_copy(k)] = deep_copy(v); end
	return copy;
end
M.deep_copy = deep_copy;

--------------------------------------------------------------------------------------------------
-- The world: one clock, the hosts, their storage, and everything the module leaves behind.

local World = {};
World.__index = World;

-- options: watchdog = "0.12" | "13" | "13-standin"; no_watchfd = true; process_type = "prosodyctl";
-- accounts = "0.12" | "13" (13's usermanager knows disabled accounts); no_pep = true (mod_pep
-- cannot be loaded)
function M.world(options)
	options = options or {};
	local w = setmetatable({
		clock = 1000, -- monotonic seconds
		epoch = 1700000000, -- what wall-clock time clock 1000 is
		tasks = {}, task_seq = 0,
		config = { ["*"] = {} },
		hosts = {},
		stores = {},
		logs = {},
		metrics = {},
		samples = {},
		senders = {},
		watchers = {},
		loadlib_calls = {},
		depends = {},
		provided = {},
		options = options,
		native = M.native(),
		global_events = events_lib.new(),
		disabled_accounts = {},
		cancels = {},
		host_items = {}, -- host -> kind -> { item, ... }
		peps = {},
		parse = M.parse,
	}, World);
	w.prosody = {
		hosts = {}, process_type = options.process_type or "prosody",
		version = options.accounts == "13" and "13.0.1" or "0.12.3",
		full_sessions = {}, bare_sessions = {}, events = w.global_events,
	};
	return w;
end

-- Wall-clock seconds (util.time.now) at this world's clock.
function World:wall_clock()
	return self.epoch + (self.clock - 1000);
end

function World:fire_global(event, data)
	return self.global_events.fire_event(event, data);
end

-- module:add_item / remove_item of a module on `host` (mod_pep's "pep-service" items).
function World:add_host_item(host, kind, item)
	self.host_items[host] = self.host_items[host] or {};
	local items = self.host_items[host][kind] or {};
	self.host_items[host][kind] = items;
	items[#items + 1] = item;
	self.prosody.hosts[host].events.fire_event("item-added/" .. kind, { item = item });
end

function World:remove_host_item(host, kind, service)
	local items = (self.host_items[host] or {})[kind] or {};
	for i, item in ipairs(items) do
		if item.service == service then
			table.remove(items, i);
			self.prosody.hosts[host].events.fire_event("item-removed/" .. kind, { item = item });
			return;
		end
	end
end

-- mod_pep on a host (made on first use, as module:depends loads it).
function World:pep(host)
	local pep = self.peps[host];
	if not pep then
		pep = pep_lib.new(self, host);
		self.peps[host] = pep;
	end
	return pep;
end

-- core.usermanager: 0.12's knows no disabled accounts; 13's user_is_enabled reads the account.
function World:usermanager_module()
	local w = self;
	local um = {};
	if self.options.accounts == "13" then
		function um.user_is_enabled(user, host)
			return not w.disabled_accounts[user .. "@" .. host];
		end
	end
	return um;
end

-- Prosody stops: server-stopping fires inside its main thread runner (util.startup, mod_posix's
-- signal handlers), where a handler may wait. Returns the runner: "waiting" while one does.
function World:stop_server(reason)
	local async = require "util.async";
	local w = self;
	local runner = async.runner(function ()
		w:fire_global("server-stopping", { reason = reason or "stand-in shutdown" });
		w.stopped = true;
	end);
	runner:run(true);
	return runner;
end

-- Timers (util.timer's contract: callback(now, id, param), a number returned runs it again).
function World:add_task(delay, callback, param)
	self.task_seq = self.task_seq + 1;
	local id = self.task_seq;
	self.tasks[id] = { id = id, at = self.clock + delay, callback = callback, param = param };
	return id;
end

function World:stop_task(id)
	self.tasks[id] = nil;
end

function World:reschedule_task(id, delay)
	local task = self.tasks[id];
	if task then task.at = self.clock + delay; end
end

function World:task_count()
	local n = 0;
	for _ in pairs(self.tasks) do n = n + 1; end
	return n;
end

-- Moves the clock forward, running every timer that falls due on the way, in order.
function World:advance(seconds)
	local target = self.clock + seconds;
	while true do
		local due;
		for _, task in pairs(self.tasks) do
			if task.at <= target and (not due or task.at < due.at or (task.at == due.at and task.id < due.id)) then
				due = task;
			end
		end
		if not due then break; end
		if due.at > self.clock then self.clock = due.at; end
		self.tasks[due.id] = nil;
		local again = due.callback(self.clock, due.id, due.param);
		if type(again) == "number" then
			due.at = self.clock + again;
			self.tasks[due.id] = due;
		end
	end
	self.clock = target;
end

function World:timer_module()
	local w = self;
	return {
		add_task = function (delay, callback, param) return w:add_task(delay, callback, param); end;
		stop = function (id) w:stop_task(id); end;
		reschedule = function (id, delay) w:reschedule_task(id, delay); end;
	};
end

-- util.watchdog: Prosody's real one (0.12's from /usr/lib/prosody, 13's when unpacked in
-- .cache), run on this world's clock; or, for 13 without the unpacked tree, a stand-in with the
-- same interface (reset(new_timeout) keeps the object, a timer_id while armed).
function World:watchdog_module()
	if self.watchdog then return self.watchdog; end
	local style = self.options.watchdog or "0.12";
	local w = self;
	local file = style == "0.12" and "/usr/lib/prosody/util/watchdog.lua" or style == "13" and M.PROSODY13_WATCHDOG;
	if file then
		local timer = self:timer_module();
		local env = {
			require = function (name)
				assert(name == "util.timer" or name == "prosody.util.timer", name);
				return timer;
			end;
			setmetatable = setmetatable;
			os = { time = function () return w.clock; end };
		};
		self.watchdog = assert(loadfile(file, "t", env))();
	else
		local methods = {};
		local mt = { __index = methods };
		function methods:reset(new_timeout)
			if new_timeout then self.timeout = new_timeout; end
			if self.timer_id then
				w:reschedule_task(self.timer_id, self.timeout + 1);
			else
				self.timer_id = w:add_task(self.timeout + 1, function () return self:callback(); end);
			end
		end
		function methods:cancel()
			if self.timer_id then w:stop_task(self.timer_id); self.timer_id = nil; end
		end
		self.watchdog = {
			new = function (timeout, callback)
				local dog = setmetatable({ timeout = timeout, callback = callback }, mt);
				dog:reset();
				return dog;
			end;
		};
	end
	return self.watchdog;
end

function World:server_module()
	local w = self;
	local server = {};
	if not self.options.no_watchfd then
		function server.watchfd(fd, onreadable)
			local handle = { fd = fd, onreadable = onreadable, closed = false };
			function handle:close() self.closed = true; end
			w.watchers[#w.watchers + 1] = handle;
			return handle;
		end
	end
	return server;
end

function World:readable(fd)
	for _, handle in ipairs(self.watchers) do
		if handle.fd == fd and not handle.closed then handle.onreadable(handle); end
	end
end

function World:open_watchers()
	local n = 0;
	for _, handle in ipairs(self.watchers) do if not handle.closed then n = n + 1; end end
	return n;
end

function World:require_for_module(name)
	if name == "util.time" then
		local w = self;
		return {
			now = function () return w:wall_clock(); end;
			monotonic = function () return w.clock; end;
		};
	elseif name == "util.timer" or name == "prosody.util.timer" then
		return self:timer_module();
	elseif name == "util.watchdog" or name == "prosody.util.watchdog" then
		return self:watchdog_module();
	elseif name == "net.server" then
		return self:server_module();
	elseif name == "core.usermanager" or name == "prosody.core.usermanager" then
		return self:usermanager_module();
	elseif name == "core.storagemanager" then
		local w = self;
		return {
			initialize_host = function (host) w.initialized = host; end;
			-- The stand-in's stores are memory, not internal storage's files.
			get_driver = function () return nil, "memory"; end;
		};
	end
	return require(name);
end

--------------------------------------------------------------------------------------------------
-- Storage: keyval stores in memory; values are copied in and out as a real back end would.

local Store = {};
Store.__index = Store;

function World:store(host, name)
	local key = host .. "/" .. name;
	local store = self.stores[key];
	if not store then
		store = setmetatable({ data = {}, writes = 0, reads = 0 }, Store);
		self.stores[key] = store;
	end
	return store;
end

function Store:get(user)
	self.reads = self.reads + 1;
	if self.fail_reads then return nil, "stand-in read failure"; end
	return deep_copy(self.data[user or ""]);
end

function Store:set(user, value)
	if self.fail_writes then return nil, "stand-in write failure"; end
	self.writes = self.writes + 1;
	self.data[user or ""] = deep_copy(value);
	return true;
end

--------------------------------------------------------------------------------------------------
-- The native sender: spec/helpers/fake_sender.lua (API v2's semantics, answers chosen by the specs).

local new_fake_sender = require "fake_sender".install(M);

function World:new_sender(options)
	local sender, err = new_fake_sender(self, options);
	if sender then self.senders[#self.senders + 1] = sender; end
	return sender, err;
end

-- A result is ready: into the sender's queue, and the fd is readable.
function World:signal(record, result)
	result.id = record.id;
	result.elapsed = result.elapsed or (self.clock - record.at);
	result.reason = result.reason or result.outcome;
	local sender = record.sender;
	sender.results[#sender.results + 1] = result;
	if self.options.no_watchfd then return; end
	self:readable(sender.fd_number);
end

-- The final outcome of a job: "delivered" | "gone" | "failed" | "expired" | "refused", with
-- extra fields (status, reason, attempts).
function World:answer(record, outcome, extra)
	local result = { outcome = outcome, attempts = 1 };
	for k, v in pairs(extra or {}) do result[k] = v; end
	record.final = outcome;
	self:signal(record, result);
end

--------------------------------------------------------------------------------------------------
-- Hosts: the module API and mod_iq/mod_disco/mod_smacks behaviour the module relies on.

local Host = {};
Host.__index = Host;

local function format_log(fmt, ...)
	local ok, text = pcall(string.format, fmt, ...);
	return ok and text or (tostring(fmt) .. " [bad format]");
end

function World:log(source, level, fmt, ...)
	self.logs[#self.logs + 1] = { source = source, level = level, text = format_log(fmt, ...) };
end

function World:make_api(host)
	local w = self;
	local events = (self.prosody.hosts[host] or { events = events_lib.new() }).events;
	local api = { name = "web_push", host = host, path = M.MODULE_FILE, hooks = {}, global_hooks = {}, object_hooks = {},
		loaded = true };
	function api:log(level, fmt, ...) w:log(host .. ":web_push", level, fmt, ...); end
	function api:get_host_type() return w.prosody.hosts[host] and w.prosody.hosts[host].type or "global"; end
	function api:get_directory() return "build/mod_web_push"; end
	function api:get_option(name, default)
		local value = (w.config[host] or {})[name];
		if value == nil then value = w.config["*"][name]; end
		if value == nil then value = default; end
		return value;
	end
	function api:get_option_string(name, default)
		local value = self:get_option(name, default);
		if value == nil then return nil; end
		return tostring(value);
	end
	function api:get_option_number(name, default)
		return tonumber(self:get_option(name, default));
	end
	function api:get_option_boolean(name, default)
		local value = self:get_option(name, default);
		if value == nil then return nil; end
		return value == true or value == "true" or value == 1;
	end
	function api:get_option_array(name, default)
		local value = self:get_option(name, default);
		if value == nil then return nil; end
		if type(value) ~= "table" then return { value }; end
		local copy = {};
		for i, v in ipairs(value) do copy[i] = v; end
		return copy;
	end
	function api:hook(event, handler, priority)
		events.add_handler(event, handler, priority);
		self.hooks[#self.hooks + 1] = { event, handler };
	end
	function api:unhook(event, handler)
		events.remove_handler(event, handler);
	end
	function api:hook_global(event, handler, priority)
		w.global_events.add_handler(event, handler, priority);
		self.global_hooks[#self.global_hooks + 1] = { event, handler };
	end
	-- Prosody removes these at unload too.
	function api:hook_object_event(object, event, handler, priority)
		object.add_handler(event, handler, priority);
		self.object_hooks[#self.object_hooks + 1] = { object, event, handler };
	end
	function api:unhook_object_event(object, event, handler)
		object.remove_handler(event, handler);
	end
	-- Prosody's: the item-added/removed events, and the items already there.
	function api:handle_items(kind, added, removed, existing)
		self:hook("item-added/" .. kind, added);
		self:hook("item-removed/" .. kind, removed);
		if existing ~= false then
			for _, item in ipairs((w.host_items[host] or {})[kind] or {}) do added({ item = item }); end
		end
	end
	-- Loads another module: only mod_pep is stood in.
	function api:depends(name)
		w.depends[#w.depends + 1] = { host = host, name = name };
		if name ~= "pep" or w.options.no_pep then
			error(("Unable to load required module, mod_%s: stand-in has none"):format(name));
		end
		return w:pep(host);
	end
	-- Prosody's loader: <name>.lib.lua from the module's folder, run in the module's environment,
	-- on every call.
	function api:require(name)
		local chunk, err = loadfile(M.MODULE_DIR .. name .. ".lib.lua", "t", self.environment);
		if not chunk then error("Failed to load plugin library '" .. name .. "', error: " .. tostring(err)); end
		return chunk();
	end
	function api:fire_event(...)
		return events.fire_event(...);
	end
	function api:open_store(name, kind)
		assert(kind == nil or kind == "keyval", "only keyval stores are stood in");
		return w:store(self.host, name);
	end
	function api:provides(kind, item)
		w.provided[#w.provided + 1] = { host = host, kind = kind, item = item };
	end
	function api:context(other)
		local context = w:make_api_shell(other);
		return context;
	end
	local timer_mt = { __index = {
		stop = function (t) w:stop_task(t.id); end;
		reschedule = function (t, delay) w:reschedule_task(t.id, delay); end;
	} };
	function api:add_timer(delay, callback)
		local t = setmetatable({}, timer_mt);
		t.id = w:add_task(delay, function (now)
			if api.loaded == false then return; end
			return callback(now);
		end);
		return t;
	end
	function api:measure(name, kind)
		if kind == "counter" then
			w.metrics[host .. "/" .. name] = 0;
			return function (n) w.metrics[host .. "/" .. name] = w.metrics[host .. "/" .. name] + n; end;
		elseif kind == "times" then
			local samples = {};
			w.samples[host .. "/" .. name] = samples;
			return function ()
				local start = w.clock;
				return function () samples[#samples + 1] = w.clock - start; end;
			end;
		end
		error("measure type " .. tostring(kind) .. " is not stood in");
	end
	return api;
end

-- Another host's module API, as module:context() gives (enough for open_store).
function World:make_api_shell(host)
	local w = self;
	return {
		host = host;
		open_store = function (_, name) return w:store(host, name); end;
	};
end

-- Declares a VirtualHost with options (as in prosody.cfg.lua).
function World:virtual_host(host, options)
	self.config[host] = options or {};
	self.prosody.hosts[host] = {
		type = "local", host = host, sessions = {}, modules = {}, events = events_lib.new(),
	};
	return host;
end

-- The native library as the module sees it: the real one, with the fake sender.
function World:native_for_module(new_sender)
	local w = self;
	local lib = setmetatable({}, { __index = w.native });
	lib.new_sender = new_sender or function (opts) return w:new_sender(opts); end;
	return lib;
end

-- Loads the module on a host, as modulemanager does: a fresh environment over _G with `module`.
function World:load(host, options)
	if not self.prosody.hosts[host] then self:virtual_host(host, options); end
	local w = self;
	local api = self:make_api(host);
	local env;
	env = setmetatable({
		module = api,
		prosody = self.prosody,
		require = function (name) return w:require_for_module(name); end,
		package = setmetatable({
			loadlib = function (path, symbol)
				w.loadlib_calls[#w.loadlib_calls + 1] = { path = path, symbol = symbol };
				if w.native_missing then return nil, "stand-in: cannot open " .. path; end
				return function () return w:native_for_module(); end;
			end;
		}, { __index = package }),
	}, { __index = _G });
	api.environment = env;
	local chunk = assert(loadfile(M.MODULE_FILE, "t", env));
	self.loading_host = host;
	local ok, err = pcall(chunk);
	self.loading_host = nil;
	if not ok then
		-- modulemanager's behaviour on a failed load: the module is not there; its hooks stay
		-- registered (so the module must not add any before it can fail).
		return nil, err, api;
	end
	local handle = setmetatable({ world = self, host = host, api = api, env = env,
		events = self.prosody.hosts[host].events }, Host);
	self.hosts[host] = handle;
	return handle;
end

function Host:unload()
	local api = self.api;
	if api.unload then api.unload(); end
	for _, hook in ipairs(api.hooks) do self.events.remove_handler(hook[1], hook[2]); end
	for _, hook in ipairs(api.global_hooks) do self.world.global_events.remove_handler(hook[1], hook[2]); end
	for _, hook in ipairs(api.object_hooks) do hook[1].remove_handler(hook[2], hook[3]); end
	api.loaded = false;
end

-- As modulemanager reloads: module.save, unload, load, module.restore with what save returned.
function Host:reload()
	local api = self.api;
	local saved = api.save and api.save();
	api.reloading = true;
	self:unload();
	local handle, err = self.world:load(self.host);
	if handle and handle.api.restore then handle.api.restore(saved or {}); end
	return handle, err;
end

function Host:sender()
	local senders = self.world.senders;
	for i = #senders, 1, -1 do
		if senders[i].host == self.host and not senders[i].closed then return senders[i]; end
	end
end

function Host:fire(event, data)
	return self.events.fire_event(event, data);
end

-- A c2s session of a user (resource bound, with sessionmanager's resource-bind event).
function Host:session(user, resource)
	resource = resource or "web";
	local prosody_host = self.world.prosody.hosts[self.host];
	local account = prosody_host.sessions[user];
	if not account then
		account = { sessions = {}, username = user };
		prosody_host.sessions[user] = account;
	end
	local w = self.world;
	local session = {
		type = "c2s", username = user, host = self.host, resource = resource,
		full_jid = user .. "@" .. self.host .. "/" .. resource, sent = {},
	};
	function session.send(stanza) session.sent[#session.sent + 1] = stanza; return true; end
	function session.log(level, fmt, ...) w:log(session.full_jid, level, fmt, ...); end
	account.sessions[resource] = session;
	self:fire("resource-bind", { session = session });
	return session;
end

-- Account events, as usermanager fires them on Prosody's global events (deletion in this process:
-- in-band, the shell, 13's prosodyctl) and mod_register_ibr on the host.
function Host:delete_user(user, host)
	return self.world:fire_global("user-deleted", { username = user, host = host or self.host });
end

function Host:register_user(user)
	return self:fire("user-registered", { username = user, host = self.host, source = "mod_register" });
end

-- Prosody 13's usermanager (world option accounts = "13").
function Host:disable_user(user)
	self.world.disabled_accounts[user .. "@" .. self.host] = true;
	return self.world:fire_global("user-disabled", { username = user, host = self.host });
end

function Host:enable_user(user)
	self.world.disabled_accounts[user .. "@" .. self.host] = nil;
	return self.world:fire_global("user-enabled", { username = user, host = self.host });
end

-- What deletion in another process leaves: storagemanager.purge of the account, no event here.
function World:purge(user, host)
	for key, store in pairs(self.stores) do
		if key:sub(1, #(host or M.HOST) + 1) == (host or M.HOST) .. "/" then store.data[user] = nil; end
	end
end

-- The session ends (resource unbound), as sessionmanager does.
function Host:close(session)
	session.destroyed = true;
	if session.hibernating_watchdog then session.hibernating_watchdog:cancel(); end
	self:fire("resource-unbind", { session = session });
	local account = self.world.prosody.hosts[self.host].sessions[session.username];
	account.sessions[session.resource] = nil;
	if next(account.sessions) == nil then
		self.world.prosody.hosts[self.host].sessions[session.username] = nil;
	end
end

-- mod_smacks puts the session to sleep: a watchdog that destroys it after resume_timeout (13's
-- ignores a watchdog calling back that is not the session's current one), then the event.
function Host:hibernate(session, queue, resume_timeout)
	local watchdog = self.world:watchdog_module();
	local w = self.world;
	session.hibernating = w.clock;
	session.hibernating_watchdog = watchdog.new(resume_timeout or 600, function (this)
		if (w.options.watchdog or "0.12") ~= "0.12" and this ~= session.hibernating_watchdog then
			session.stray_watchdogs = (session.stray_watchdogs or 0) + 1;
			return;
		end
		if session.destroyed then return; end
		session.expired_at = w.clock;
		self:close(session);
	end);
	self:fire("smacks-hibernation-start", { origin = session, queue = queue or {} });
end

function Host:resume(session)
	if session.hibernating_watchdog then
		session.hibernating_watchdog:cancel();
		session.hibernating_watchdog = nil;
	end
	session.hibernating = nil;
	self:fire("smacks-hibernation-end", { origin = { type = "c2s_unauthed" }, resumed = session, queue = {} });
end

-- A stanza mod_smacks queues for a hibernating session (it queues a copy of what was routed).
function Host:queue(session, stanza)
	local copy = st.clone(stanza);
	self:fire("smacks-hibernation-stanza-queued", { origin = session, queue = { copy }, stanza = copy });
	return copy;
end

-- An IQ from a session, dispatched as mod_iq does: "iq-<type>/self/<xmlns>:<name>", and
-- service-unavailable when nobody handles it. Returns the answer.
function Host:iq(session, child, iq_type)
	self.iq_seq = (self.iq_seq or 0) + 1;
	local iq = st.iq({ type = iq_type or "set", id = "iq" .. self.iq_seq, from = session.full_jid });
	iq:add_child(child);
	local name = ("iq-%s/self/%s:%s"):format(iq.attr.type, child.attr.xmlns or "", child.name);
	local before = #session.sent;
	local handled = self:fire(name, { origin = session, stanza = iq });
	if not handled then session.send(st.error_reply(iq, "cancel", "service-unavailable")); end
	assert(#session.sent == before + 1, "exactly one answer to an IQ");
	return session.sent[#session.sent];
end

-- mod_disco's account disco#info, answered for a session's own account.
function Host:disco(session)
	local reply = st.stanza("iq", { type = "result" }):tag("query", { xmlns = "http://jabber.org/protocol/disco#info" });
	reply:tag("identity", { category = "account", type = "registered" }):up();
	self:fire("account-disco-info", { origin = session, reply = reply });
	return reply.tags[1];
end

-- The VAPID public key as disco shows it.
function Host:vapid_key(session)
	local query = self:disco(session or self:session("disco-" .. tostring(self.world.clock), "d"));
	for form in query:childtags("x", "jabber:x:data") do
		local form_type, key;
		for field in form:childtags("field") do
			if field.attr.var == "FORM_TYPE" then form_type = field:get_child_text("value"); end
			if field.attr.var == "webpush#public-key" then key = field:get_child_text("value"); end
		end
		if form_type == "http://jabber.org/protocol/webpush#public-key" then return key; end
	end
end

--------------------------------------------------------------------------------------------------
-- What most specs start from.

-- A world with one VirtualHost (M.HOST) that has the module loaded with `options`.
function M.setup(options, world_options)
	local world = M.world(world_options);
	world:virtual_host(M.HOST, options);
	local host = assert(world:load(M.HOST));
	return world, host;
end

-- A user whose web client enabled `count` subscriptions and was closed: the first, and all.
function Host:subscribed_offline(user, count)
	local session = self:session(user, "browser");
	local subs = {};
	for i = 1, count or 1 do
		subs[i] = M.subscription();
		assert(self:enable(session, subs[i]).attr.type == "result", "enable refused");
	end
	self:close(session);
	return subs[1], subs;
end

-- A session of a user that enabled a fresh subscription: the session and the subscription.
function Host:subscribed_session(user, resource)
	local session = self:session(user, resource);
	local sub = M.subscription();
	assert(self:enable(session, sub).attr.type == "result", "enable refused");
	return session, sub;
end

-- A subscription as stored for a user of M.HOST (nil when there is none).
function World:stored(user, sub)
	local subs = self:store(M.HOST, "web_push").data[user];
	return subs and subs[sub.endpoint];
end

--------------------------------------------------------------------------------------------------
-- Stanzas and the events that route them.

-- A chat message; `extra` is XML text of more children.
function M.message(from, to, body, extra, attrs)
	local message = st.message({ from = from, to = to, type = "chat", id = "m" .. tostring(math.random(1e9)) });
	for k, v in pairs(attrs or {}) do message.attr[k] = v; end
	if body then message:text_tag("body", body); end
	if extra then message:add_child(M.parse(extra)); end
	return message;
end

function M.to_juliet(body, extra, attrs)
	return M.message(M.ROMEO, M.JULIET, body, extra, attrs);
end

-- mod_mam's copy for other handlers carries the archive id.
function M.with_stanza_id(message, by, id)
	local copy = st.clone(message);
	copy:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = by, id = id }):up();
	return copy;
end

-- mod_message found no session: mod_offline's event.
function Host:offline(user, stanza)
	return self:fire("message/offline/handle", { origin = { type = "s2sin" }, username = user, stanza = stanza });
end

-- A stanza one of the user's clients sends, as stanza_router fires it before routing:
-- "pre-message/bare" or "pre-message/full" on the session's host.
function Host:outgoing(session, stanza)
	stanza.attr.from = session.full_jid;
	local node, _, resource = jid_lib.split(stanza.attr.to);
	local to_type = node and (resource and "/full" or "/bare") or "/host";
	return self:fire("pre-" .. stanza.name .. to_type, { origin = session, stanza = stanza });
end

-- A presence routed to one of the user's sessions.
function Host:presence_to(session, stanza)
	stanza.attr.to = session.full_jid;
	return self:fire("presence/full", { origin = { type = "component" }, stanza = stanza });
end

-- mod_mam archived a message for a user.
function Host:archived(user, stanza, id)
	return self:fire("archive-message-added", { origin = { type = "s2sin" }, stanza = stanza, for_user = user, id = id });
end

-- mod_smacks: a live session has not acknowledged.
function Host:ack_delayed(session, stanza, queue)
	return self:fire("smacks-ack-delayed", { origin = session, stanza = stanza, queue = queue or { stanza } });
end

--------------------------------------------------------------------------------------------------
-- Browsers: a subscription whose private key decrypts what the sender got.

function M.subscription(endpoint)
	local native = M.native();
	local private, public = native.generate_keypair();
	return {
		endpoint = endpoint or ("https://push.example.net/wpush/v2/" .. M.b64url(random.bytes(12))),
		p256dh = public, auth = M.b64url(random.bytes(16)), private = private,
	};
end

function M.enable_request(sub)
	local request = st.stanza("enable", { xmlns = M.NS });
	if sub.endpoint then request:text_tag("endpoint", sub.endpoint); end
	if sub.p256dh then request:text_tag("p256dh", sub.p256dh); end
	if sub.auth then request:text_tag("auth", sub.auth); end
	return request;
end

function M.disable_request(endpoint)
	local request = st.stanza("disable", { xmlns = M.NS });
	if endpoint then request:text_tag("endpoint", endpoint); end
	return request;
end

function Host:enable(session, sub)
	return self:iq(session, M.enable_request(sub));
end

function Host:disable(session, endpoint)
	return self:iq(session, M.disable_request(endpoint));
end

-- The jobs handed to this world's senders for a subscription, each decrypted as the browser does.
function World:pushes_for(sub)
	local found = {};
	for _, record in ipairs(self.all_jobs or {}) do
		if record.job.endpoint == sub.endpoint and record.job.p256dh == sub.p256dh then
			local plaintext = assert(M.testing().decrypt(sub.private, sub.auth, record.body));
			record.notification = json.decode((plaintext:gsub("%s+$", "")));
			record.json_size = #(plaintext:gsub("%s+$", ""));
			found[#found + 1] = record;
		end
	end
	return found;
end

-- The latest push to a subscription, and how many there were.
function World:last_push(sub)
	local pushes = self:pushes_for(sub);
	return pushes[#pushes], #pushes;
end

function World:job_count()
	return #(self.all_jobs or {});
end

-- The stanza error of an answer: type, condition, text (nil for a result).
function M.stanza_error(answer)
	if answer.attr.type ~= "error" then return nil; end
	local error_type, condition, text = answer:get_error();
	return error_type, condition, text;
end

-- Log lines that contain any of the secrets.
function World:leaks(secrets)
	local leaked = {};
	for _, line in ipairs(self.logs) do
		for _, secret in ipairs(secrets) do
			if secret ~= "" and line.text:find(secret, 1, true) then leaked[#leaked + 1] = line.text; end
		end
	end
	return leaked;
end

function World:log_lines(pattern, level)
	local found = {};
	for _, line in ipairs(self.logs) do
		if (not level or line.level == level) and line.text:find(pattern) then found[#found + 1] = line; end
	end
	return found;
end

return M;
