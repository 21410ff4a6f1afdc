-- Cost of sender:push on the caller's thread (Prosody's), in µs per push, through Lua.
-- Usage: lua5.4 benches/push_cost.lua build/mod_web_push/web_push.so [pushes]
-- (It also runs the v1 signature, to compare with a library built before v2.)
local socket = require "socket";
local library, count = arg[1], tonumber(arg[2] or "20000");
local web_push = assert(package.loadlib(library, "luaopen_web_push"))();
local v2 = web_push.testing ~= nil;

-- A push service that takes connections and never answers: the workers wait on it and the
-- pushes pile up in the queue, so only the caller's work is timed.
local server = assert(socket.bind("127.0.0.1", 0));
local _, port = server:getsockname();
local endpoint = "http://127.0.0.1:" .. port .. "/wpush/v2/gAAAAABkZ3yq1xW4bench";
local p256dh = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
local auth = "BTBZMqHH6r4Tts7J_aSIgg";
local private = web_push.generate_keypair();

local function run()
	local sender = assert(web_push.new_sender({ private_key = private, subject = "mailto:bench@example.org",
		workers = 1, queue_size = count + 10, timeout = 600, allow_insecure = true }));
	local payload = { account = "juliet@capulet.lit", important = true, ["message-count"] = 1,
		["last-message-body"] = "New Message!" };
	local started = socket.gettime();
	for _ = 1, count do
		local id, err;
		if v2 then
			id, err = sender:push("juliet@capulet.lit", endpoint, p256dh, auth, payload, 86400, "high", "romeo@montague.lit");
		else
			id, err = sender:push(endpoint, p256dh, auth, payload, 86400, "high", "abcdef0123456789");
		end
		if not id then error(err); end
	end
	local elapsed = socket.gettime() - started;
	sender:close();
	return elapsed * 1e6 / count;
end

local best = math.huge;
for _ = 1, 5 do
	local cost = run();
	if cost < best then best = cost; end
	collectgarbage();
end
print(string.format("sender:push %s: %.2f µs per push (best of 5 runs of %d)", v2 and "v2" or "v1", best, count));
