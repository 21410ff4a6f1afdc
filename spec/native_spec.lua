-- The native library as Lua sees it: its tables, errors as values, results and RFC 8291 Appendix A.
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;
local json = require "util.json";
local base64 = require "util.encodings".base64;
local socket = require "socket";

local function unbase64url(text)
	local standard = text:gsub("%-", "+"):gsub("_", "/");
	return base64.decode(standard .. string.rep("=", (4 - #standard % 4) % 4));
end

local function load_native()
	local open = assert(package.loadlib("build/mod_web_push/web_push.so", "luaopen_web_push"));
	return open();
end

local function read_vector()
	local file = assert(io.open("tests/vectors/rfc8291-appendix-a.json"));
	local vector = json.decode(file:read("a"));
	file:close();
	return vector;
end

describe("web_push native library", function()
	local web_push = load_native();
	local testing = web_push.testing;
	local vector = read_vector();
	local account = "juliet@capulet.lit";

	describe("tables", function()
		it("keeps test-only functions off the main table", function()
			for _, name in ipairs({ "encrypt", "decrypt", "vapid_header", "parse_retry_after", "fit_payload" }) do
				assert.is_nil(web_push[name], name);
				assert.is_function(testing[name], name);
			end
		end);

		it("publishes the bounds of every option", function()
			assert.same({ 1, 64 }, web_push.limits.workers);
			assert.same({ 1, 1000000 }, web_push.limits.queue_size);
			assert.same({ 0.1, 600 }, web_push.limits.timeout);
			assert.same({ 0, 2592000 }, web_push.limits.ttl);
			assert.equal(3000, web_push.limits.payload);
			assert.equal(math.type(web_push.limits.workers[2]), "integer");
		end);
	end);

	describe("keys", function()
		it("generates a P-256 pair in the browser's format", function()
			local private, public = web_push.generate_keypair();
			assert.is_string(private);
			assert.equal(43, #private); -- 32 bytes, base64url without padding
			assert.equal(87, #public); -- 65 bytes
			assert.equal("B", public:sub(1, 1)); -- 0x04, uncompressed
			assert.equal(public, web_push.public_key(private));
		end);

		it("round-trips through PKCS#8 PEM", function()
			local private, public = web_push.generate_keypair();
			local pem = assert(web_push.export_private_key_pem(private));
			assert.truthy(pem:find("BEGIN PRIVATE KEY", 1, true));
			local again, again_public = web_push.import_private_key(pem);
			assert.equal(private, again);
			assert.equal(public, again_public);
		end);

		it("derives the RFC's public key from its private key", function()
			assert.equal(vector.as_public, web_push.public_key(vector.as_private));
		end);

		it("returns nil and a message for bad key material", function()
			for _, bad in ipairs({ "", "!!", "AAAA", string.rep("A", 100000), "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----" }) do
				local ok, err = web_push.import_private_key(bad);
				assert.is_nil(ok);
				assert.is_string(err);
			end
			local ok, err = web_push.public_key(nil);
			assert.is_nil(ok);
			assert.equal("private key is missing", err);
			ok, err = web_push.public_key({});
			assert.is_nil(ok);
			assert.equal("private key must be a string, not table", err);
		end);
	end);

	describe("subscriptions", function()
		it("accepts a real subscription", function()
			assert.is_true(web_push.check_subscription(vector.ua_public, vector.auth_secret));
		end);

		it("names what is wrong", function()
			local cases = {
				{ "", vector.auth_secret, "p256dh is missing" };
				{ "@@@", vector.auth_secret, "p256dh is not base64url" };
				{ "AAAA", vector.auth_secret, "p256dh has 3 bytes, expected 65" };
				{ vector.ua_public, "AAAA", "auth has 3 bytes, expected 16" };
				{ vector.ua_public:sub(1, -3) .. "AA", vector.auth_secret, "p256dh is not a point on the P-256 curve" };
			};
			for _, case in ipairs(cases) do
				local ok, err = web_push.check_subscription(case[1], case[2]);
				assert.is_nil(ok);
				assert.equal(case[3], err);
			end
		end);

		it("checks endpoints without the network", function()
			assert.is_true(web_push.check_endpoint("https://push.example.net/x"));
			local ok, condition, err = web_push.check_endpoint("http://push.example.net/x");
			assert.is_nil(ok);
			assert.equal("not-acceptable", condition);
			assert.equal("endpoint must use https", err);
			ok, condition = web_push.check_endpoint("not a url");
			assert.equal("bad-request", condition);
			ok, condition = web_push.check_endpoint("https://10.0.0.1/x");
			assert.equal("not-acceptable", condition);
			assert.is_true(web_push.check_endpoint("http://127.0.0.1:5000/x", { allow_insecure = true }));
			ok, condition, err = web_push.check_endpoint("https://evil.example/x", { hosts = { "*.push.apple.com" } });
			assert.equal("not-acceptable", condition);
			assert.equal("endpoint host is not in web_push_endpoint_hosts", err);
		end);

		it("allows port 443 only, unless a hosts entry names the port", function()
			local ok, condition, err = web_push.check_endpoint("https://push.example.net:25/x");
			assert.is_nil(ok);
			assert.equal("not-acceptable", condition);
			assert.equal("endpoint port is not 443 and not named in web_push_endpoint_hosts", err);
			assert.is_true(web_push.check_endpoint("https://push.example.net:443/x"));
			local hosts = { hosts = { "push.example.net:8443", "*.example.org:4443" } };
			assert.is_true(web_push.check_endpoint("https://push.example.net:8443/x", hosts));
			assert.is_true(web_push.check_endpoint("https://a.example.org:4443/x", hosts));
			ok = web_push.check_endpoint("https://push.example.net/x", hosts);
			assert.is_nil(ok);
			assert.is_true(web_push.check_endpoint("https://push.example.net:8443/x", { allow_insecure = true }));
		end);
	end);

	describe("encryption", function()
		it("decrypts RFC 8291 Appendix A's body", function()
			local body = assert(unbase64url(vector.body));
			local plaintext = assert(testing.decrypt(vector.ua_private, vector.auth_secret, body));
			assert.equal(vector.plaintext_utf8, plaintext);
		end);

		it("round-trips and pads with RFC 8188's delimiter and zeros", function()
			local message = '{"account":"juliet@capulet.lit"}';
			local body = assert(testing.encrypt(vector.ua_public, vector.auth_secret, message));
			assert.equal(16 + 4 + 1 + 65 + 256 + 16, #body);
			assert.equal(message, assert(testing.decrypt(vector.ua_private, vector.auth_secret, body)));
		end);

		it("never makes a body over 4096 bytes", function()
			local body = assert(testing.encrypt(vector.ua_public, vector.auth_secret, string.rep("x", 3000)));
			assert.equal(4096, #body);
			local ok, err = testing.encrypt(vector.ua_public, vector.auth_secret, string.rep("x", 5000));
			assert.is_nil(ok);
			assert.matches("payload too large", err);
		end);

		it("refuses garbage without raising", function()
			local ok, err = testing.decrypt(vector.ua_private, vector.auth_secret, "garbage");
			assert.is_nil(ok);
			assert.equal("body is not a valid aes128gcm message", err);
			ok, err = testing.decrypt(string.rep("A", 43), vector.auth_secret, "garbage");
			assert.is_nil(ok);
			assert.equal("subscriber private key is invalid", err);
		end);
	end);

	describe("payload", function()
		it("cuts long bodies at a character boundary to fit 3000 bytes of JSON", function()
			local body = string.rep("é", 2000);
			local fitted = assert(testing.fit_payload({
				account = account, ["last-message-body"] = body,
				notification = { title = "romeo@montague.lit", body = body },
			}));
			assert.is_true(#fitted <= web_push.limits.payload);
			local decoded = json.decode(fitted);
			local cut = decoded["last-message-body"];
			assert.equal("\226\128\166", cut:sub(-3));
			assert.truthy(utf8.len(cut));
			assert.equal(cut, decoded.notification.body);
			assert.equal("romeo@montague.lit", decoded.notification.title);
			assert.equal(json.encode({ account = account }), testing.fit_payload({ account = account }));
		end);

		it("refuses what cannot be cut", function()
			local ok, err = testing.fit_payload({ account = string.rep("a", 3100) });
			assert.is_nil(ok);
			assert.matches("^payload too large", err);
		end);
	end);

	describe("VAPID", function()
		it("makes an Authorization header for the endpoint's origin", function()
			local private, public = web_push.generate_keypair();
			local header = assert(testing.vapid_header(private, "https://push.example.net:8443/a/b", "mailto:admin@example.org", 1000));
			local token, key = header:match("^vapid t=([%w_%-%.]+), k=([%w_%-]+)$");
			assert.equal(public, key);
			local head, claims = token:match("^([^.]+)%.([^.]+)%.");
			assert.same({ typ = "JWT", alg = "ES256" }, json.decode(unbase64url(head)));
			local decoded = json.decode(unbase64url(claims));
			assert.equal("https://push.example.net:8443", decoded.aud);
			assert.equal(1000 + 12 * 3600, decoded.exp);
			assert.equal("mailto:admin@example.org", decoded.sub);
			assert.equal(64, #unbase64url(token:match("([^.]+)$"))); -- R || S
		end);

		it("refuses a subject push services refuse", function()
			local private = web_push.generate_keypair();
			local ok, err = testing.vapid_header(private, "https://push.example.net/", "admin@example.org");
			assert.is_nil(ok);
			assert.equal("subject must be a mailto: or https: URL", err);
			assert.is_true(web_push.check_subject("mailto:admin@example.org"));
			ok, err = web_push.check_subject("mailto:admin@localhost");
			assert.is_nil(ok);
			assert.equal("subject must be a mailto: or https: URL", err);
		end);

		it("reads Retry-After", function()
			assert.equal(120, testing.parse_retry_after("120"));
			assert.is_nil(testing.parse_retry_after("soon"));
		end);
	end);

	describe("sender", function()
		local private = web_push.generate_keypair();
		local function options(extra)
			local all = { private_key = private, subject = "mailto:a@example.org", workers = 1 };
			for k, v in pairs(extra or {}) do all[k] = v; end
			return all;
		end

		local function drain_until(sender, count, handler, seconds)
			local seen = 0;
			local deadline = socket.gettime() + (seconds or 10);
			while seen < count and socket.gettime() < deadline do
				seen = seen + sender:drain(handler);
				if seen < count then socket.sleep(0.005); end
			end
			return seen;
		end

		local function collect(sender, count, seconds)
			local results = {};
			drain_until(sender, count, function (...) results[#results + 1] = table.pack(...); end, seconds);
			return results;
		end

		-- A push service on loopback, driven from here: `serve(status)` answers what has arrived.
		local function push_service()
			local server = assert(socket.bind("127.0.0.1", 0));
			server:settimeout(0);
			local _, port = server:getsockname();
			local service = { requests = {}, url = "http://127.0.0.1:" .. port .. "/push/" };
			function service.serve(status, seconds)
				local deadline = socket.gettime() + (seconds or 5);
				repeat
					local client = server:accept();
					if client then
						client:settimeout(5);
						local request = { headers = {} };
						request.line = client:receive("*l");
						for line in function() return client:receive("*l"); end do
							if line == "" then break; end
							local name, value = line:match("^([^:]+):%s*(.*)$");
							request.headers[name:lower()] = value;
						end
						request.body = client:receive(tonumber(request.headers["content-length"]));
						service.requests[#service.requests + 1] = request;
						client:send("HTTP/1.1 " .. status .. "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
						client:close();
						return request;
					end
					socket.sleep(0.005);
				until socket.gettime() > deadline;
			end
			function service.close() server:close(); end
			return service;
		end

		it("validates its options against the limits", function()
			local ok, err = web_push.new_sender({ subject = "mailto:a@example.org" });
			assert.is_nil(ok);
			assert.equal("private key is missing", err);
			for _, case in ipairs({
				{ { workers = 0 }, "workers must be between 1 and 64" };
				{ { workers = 65 }, "workers must be between 1 and 64" };
				{ { workers = 1.5 }, "workers must be a whole number" };
				{ { queue_size = 0 }, "queue_size must be between 1 and 1000000" };
				{ { timeout = 0.01 }, "timeout must be between 0.1 and 600" };
				{ { timeout = "10" }, "timeout must be a number, not string" };
			}) do
				ok, err = web_push.new_sender(options(case[1]));
				assert.is_nil(ok);
				assert.equal(case[2], err);
			end
		end);

		it("refuses bad pushes with a message and closes cleanly", function()
			local sender = assert(web_push.new_sender(options()));
			local endpoint = "https://push.example.net/x";
			assert.is_number(sender:fd());
			local ok, err = sender:push(account, endpoint, "AAAA", vector.auth_secret, {});
			assert.is_nil(ok);
			assert.equal("p256dh has 3 bytes, expected 65", err);
			ok, err = sender:push(nil, endpoint, vector.ua_public, vector.auth_secret, {});
			assert.is_nil(ok);
			assert.equal("account is missing", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, function() end);
			assert.is_nil(ok);
			assert.equal("payload must be a table or a string, not function", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, { f = function() end });
			assert.is_nil(ok);
			assert.matches("^payload cannot be JSON", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, { body = "\255 not UTF-8" });
			assert.is_nil(ok);
			assert.matches("^payload cannot be JSON", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, string.rep(" ", 3001));
			assert.is_nil(ok);
			assert.equal("payload too large (3001 bytes, at most 3000)", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, "{}", "a day");
			assert.is_nil(ok);
			assert.equal("ttl must be a number, not string", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, "{}", 2592001);
			assert.is_nil(ok);
			assert.equal("ttl must be between 0 and 2592000", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, "{}", 60, "urgent");
			assert.is_nil(ok);
			assert.equal("urgency must be very-low, low, normal or high", err);
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, "{}", 60, "high", {});
			assert.is_nil(ok);
			assert.equal("conversation must be a string, not table", err);
			ok, err = sender:push(account, nil, vector.ua_public, vector.auth_secret, "{}");
			assert.is_nil(ok);
			assert.equal("endpoint is missing", err);
			assert.equal(0, sender:drain(function() error("no result was expected"); end));
			sender:close();
			ok, err = sender:push(account, endpoint, vector.ua_public, vector.auth_secret, "{}");
			assert.is_nil(ok);
			assert.equal("sender closed", err);
		end);

		it("reports an endpoint the policy refuses as refused, once", function()
			local sender = assert(web_push.new_sender(options({ hosts = { "push.example.net" } })));
			local id = assert(sender:push(account, "https://other.example.net/x", vector.ua_public, vector.auth_secret,
				{ account = account }, 60, "high", "romeo@montague.lit"));
			local results = collect(sender, 1);
			assert.equal(1, #results);
			local got_id, outcome, status, reason, attempts, elapsed = table.unpack(results[1], 1, 6);
			assert.equal(id, got_id);
			assert.equal("refused", outcome);
			assert.is_nil(status);
			assert.equal("endpoint host is not in web_push_endpoint_hosts", reason);
			assert.equal(0, attempts);
			assert.is_number(elapsed);
			sender:close();
		end);

		it("delivers a tagged, fitted notification with the TTL and Topic", function()
			local service = push_service();
			local sender = assert(web_push.new_sender(options({ allow_insecure = true })));
			local id = assert(sender:push(account, service.url .. "1", vector.ua_public, vector.auth_secret,
				{ account = account, ["last-message-body"] = string.rep("x", 5000), notification = { title = "t" } },
				3600, "high", "romeo@montague.lit"));
			local request = assert(service.serve("201 Created"));
			local results = collect(sender, 1);
			assert.same({ id, "delivered", 201, "", 1 }, { table.unpack(results[1], 1, 5) });
			assert.is_true(tonumber(request.headers.ttl) <= 3600 and tonumber(request.headers.ttl) >= 3598);
			assert.equal("high", request.headers.urgency);
			assert.matches("^%w+$", request.headers.topic);
			assert.equal(32, #request.headers.topic);
			local plaintext = assert(testing.decrypt(vector.ua_private, vector.auth_secret, request.body));
			assert.is_true(#plaintext <= 3000);
			local payload = json.decode(plaintext);
			assert.is_string(payload.tag);
			assert.equal(payload.tag, payload.notification.tag);
			assert.equal("\226\128\166", payload["last-message-body"]:sub(-3));
			sender:close();
			service.close();
		end);

		it("counts a refusal by the push service as failed, after one attempt", function()
			local service = push_service();
			local sender = assert(web_push.new_sender(options({ allow_insecure = true })));
			local id = assert(sender:push(account, service.url .. "1", vector.ua_public, vector.auth_secret, "{}", 60));
			assert(service.serve("413 Payload Too Large"));
			local results = collect(sender, 1);
			assert.same({ id, "failed", 413, "", 1 }, { table.unpack(results[1], 1, 5) });
			sender:close();
			service.close();
		end);

		it("cancels what is queued, with one result each, and exports and resumes the rest", function()
			-- A service that never answers: the only worker hangs on the first push.
			local silent = assert(socket.bind("127.0.0.1", 0));
			local _, port = silent:getsockname();
			local endpoint = "http://127.0.0.1:" .. port .. "/push/";
			local sender = assert(web_push.new_sender(options({ allow_insecure = true, timeout = 600 })));
			assert(sender:push(account, endpoint .. "hang", vector.ua_public, vector.auth_secret, "{}", 60));
			local deadline = socket.gettime() + 5;
			while sender:stats().in_flight < 1 and socket.gettime() < deadline do socket.sleep(0.005); end
			local romeo = assert(sender:push(account, endpoint .. "1", vector.ua_public, vector.auth_secret, "{}", 60, nil, "romeo"));
			assert(sender:push(account, endpoint .. "1", vector.ua_public, vector.auth_secret, '{"a":1}', 60, "low", "tybalt"));
			assert.equal(1, sender:cancel(account, endpoint .. "1", "romeo"));
			assert.equal(0, sender:cancel("nobody@example.org"));
			local results = collect(sender, 1);
			assert.same({ romeo, "cancelled", nil, "cancelled", 0 }, { table.unpack(results[1], 1, 5) });

			local stats = sender:stats();
			for _, field in ipairs({ "queued", "parked", "waiting", "in_flight", "stuck", "workers", "pushed", "refused", "wakeups", "restarts" }) do
				assert.is_number(stats[field], field);
			end
			assert.equal(0, stats.restarts);
			local exported = sender:export();
			assert.equal(2, #exported); -- the one in flight and the one queued
			assert.equal(0, sender:stats().queued);
			local queued;
			for _, job in ipairs(exported) do
				if job.conversation == "tybalt" then queued = job; end
			end
			assert.equal(account, queued.account);
			assert.equal(endpoint .. "1", queued.endpoint);
			assert.equal(vector.ua_public, queued.p256dh);
			assert.equal(vector.auth_secret, queued.auth);
			assert.equal('{"a":1}', queued.payload);
			assert.equal("low", queued.urgency);
			assert.equal(0, queued.attempts);
			assert.is_true(queued.expires > os.time() + 50 and queued.expires <= os.time() + 61);
			sender:close();
			silent:close();

			local service = push_service();
			local again = assert(web_push.new_sender(options({ allow_insecure = true })));
			queued.endpoint = service.url .. "1";
			local id = assert(again:resume(queued));
			assert(service.serve("201 Created"));
			results = collect(again, 1);
			assert.same({ id, "delivered" }, { table.unpack(results[1], 1, 2) });
			queued.expires = os.time() - 1;
			local ok, err = again:resume(queued);
			assert.is_nil(ok);
			assert.equal("expired", err);
			again:close();
			service.close();
		end);

		it("hands every result over even when the handler raises an error", function()
			local sender = assert(web_push.new_sender(options({ hosts = { "push.example.net" } })));
			for _ = 1, 3 do
				assert(sender:push(account, "https://other.example.net/x", vector.ua_public, vector.auth_secret, "{}"));
			end
			-- Wait until all three results are in, without taking them.
			local deadline = socket.gettime() + 10;
			while sender:stats().in_flight + sender:stats().queued > 0 and socket.gettime() < deadline do
				socket.sleep(0.01);
			end
			socket.sleep(0.05);
			local calls = 0;
			local ok, err = pcall(sender.drain, sender, function ()
				calls = calls + 1;
				error("handler failed " .. calls);
			end);
			assert.is_false(ok);
			assert.matches("handler failed 1", tostring(err));
			assert.equal(3, calls);
			sender:close();
		end);
	end);
end);
