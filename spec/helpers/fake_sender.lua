-- The native sender (doc/native-api.md), faked for the specs around the real library: jobs are
-- checked, fitted to the payload limit (testing.fit_payload) and encrypted for real; each gets
-- exactly one final result, when the spec answers it (World:answer) or when it is cancelled,
-- unless it is exported or dropped by close. The endpoint policy is applied at send time: a job
-- the policy refuses is never sent, its result "refused".

local LIMITS, testing; -- from the stand-in (install)

local Sender = {};
Sender.__index = Sender;

-- A sender for `world` (its clock, its native library, its signal), as native.new_sender.
local function new(world, options)
	assert(type(options) == "table", "options must be a table");
	local ok, err = world.native.public_key(options.private_key);
	if not ok then return nil, err; end
	ok, err = world.native.check_subject(options.subject);
	if not ok then return nil, err; end
	for name, range in pairs(LIMITS) do
		local value = options[name];
		if type(range) == "table" and value ~= nil and (value < range[1] or value > range[2]) then
			return nil, name .. " out of bounds";
		end
	end
	return setmetatable({
		world = world, host = world.loading_host, options = options, jobs = {}, results = {}, next_id = 0, closed = false,
		fd_number = 100 + #world.senders,
	}, Sender);
end

local urgencies = { ["very-low"] = true, low = true, normal = true, high = true };

local function fit(payload)
	local limit = LIMITS.payload;
	if type(payload) == "string" then
		if #payload > limit then return nil, "payload too large"; end
		return payload;
	end
	if type(payload) ~= "table" then return nil, "payload is missing"; end
	return testing().fit_payload(payload);
end

-- A job taken: the record the specs look at (record.job holds the push's arguments).
function Sender:take(job, plaintext)
	local body, err = testing().encrypt(job.p256dh, job.auth, plaintext);
	if not body then return nil, err; end
	self.next_id = self.next_id + 1;
	local record = {
		id = self.next_id, job = job, plaintext = plaintext, body = body,
		at = self.world.clock, expires = self.world:wall_clock() + (job.ttl or 86400), sender = self,
	};
	local ok, condition = self.world.native.check_endpoint(job.endpoint, {
		allow_insecure = self.options.allow_insecure, hosts = self.options.hosts,
	});
	if not ok then -- refused at send time: never sent
		record.final = "refused";
		self.world:signal(record, { outcome = "refused", reason = "endpoint " .. tostring(condition) });
		return record.id;
	end
	self.jobs[#self.jobs + 1] = record;
	self.world.all_jobs = self.world.all_jobs or {};
	self.world.all_jobs[#self.world.all_jobs + 1] = record;
	return record.id, record;
end

function Sender:push(account, endpoint, p256dh, auth, payload, ttl, urgency, conversation)
	if self.closed then return nil, "sender closed"; end
	if self.world.queue_full then return nil, "queue full"; end
	local job = { account = account, endpoint = endpoint, p256dh = p256dh, auth = auth, ttl = ttl, urgency = urgency,
		conversation = conversation };
	for _, field in ipairs({ "account", "endpoint", "p256dh", "auth" }) do
		if type(job[field]) ~= "string" then return nil, field .. " is missing"; end
	end
	local ttl_range = LIMITS.ttl;
	if ttl ~= nil and (type(ttl) ~= "number" or ttl < ttl_range[1] or ttl > ttl_range[2]) then
		return nil, "ttl must be between 0 and 2592000";
	end
	if urgency ~= nil and not urgencies[urgency] then return nil, "urgency must be very-low, low, normal or high"; end
	if conversation ~= nil and type(conversation) ~= "string" then return nil, "conversation must be a string"; end
	local plaintext, err = fit(payload);
	if not plaintext then return nil, err; end
	local id, extra = self:take(job, plaintext);
	if not id then return nil, extra; end
	return id;
end

-- Drops the unfinished jobs of an account (of a subscription, of a conversation): each gets its
-- final result, "cancelled".
function Sender:cancel(account, endpoint, conversation)
	assert(type(account) == "string", "account must be a string");
	self.world.cancels[#self.world.cancels + 1] = { account = account, endpoint = endpoint, conversation = conversation };
	local n = 0;
	for _, record in ipairs(self.jobs) do
		local job = record.job;
		if not record.final and job.account == account and (endpoint == nil or job.endpoint == endpoint)
		and (conversation == nil or job.conversation == conversation) then
			record.final = "cancelled";
			self.world:signal(record, { outcome = "cancelled" });
			n = n + 1;
		end
	end
	return n;
end

function Sender:export()
	local taken = {};
	for _, record in ipairs(self.jobs) do
		if not record.final then
			record.final = "exported";
			local job = record.job;
			taken[#taken + 1] = {
				account = job.account, endpoint = job.endpoint, p256dh = job.p256dh, auth = job.auth,
				payload = record.plaintext, expires = record.expires, urgency = job.urgency,
				conversation = job.conversation, attempts = 0,
			};
		end
	end
	return taken;
end

function Sender:resume(exported)
	if self.closed then return nil, "sender closed"; end
	assert(type(exported) == "table", "job must be a table");
	local left = math.floor(exported.expires - self.world:wall_clock());
	if left <= 0 then return nil, "expired"; end
	local job = { account = exported.account, endpoint = exported.endpoint, p256dh = exported.p256dh, auth = exported.auth,
		ttl = left, urgency = exported.urgency, conversation = exported.conversation };
	local id, extra = self:take(job, exported.payload);
	if not id then return nil, extra; end
	if extra then extra.resumed = true; end
	return id;
end

function Sender:fd() return self.fd_number; end

function Sender:drain(handler)
	assert(type(handler) == "function", "drain takes a handler");
	local results = self.results;
	self.results = {};
	local first_error;
	for _, r in ipairs(results) do
		local ok, err = pcall(handler, r.id, r.outcome, r.status, r.reason, r.attempts, r.elapsed);
		if not ok then first_error = first_error or err; end
	end
	if first_error then error(first_error, 0); end
	return #results;
end

-- Jobs neither answered, cancelled nor exported.
function Sender:unfinished()
	local n = 0;
	for _, record in ipairs(self.jobs) do
		if not record.final then n = n + 1; end
	end
	return n;
end

function Sender:stats()
	return { queued = self:unfinished(), parked = 0, waiting = 0, in_flight = 0, pushed = #self.jobs, refused = 0 };
end

function Sender:close() self.closed = true; end

-- The stand-in hands over what the fake shares with it.
local function install(standin)
	LIMITS, testing = standin.LIMITS, standin.testing;
	return new;
end

return { install = install };
