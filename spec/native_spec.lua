-- The native library as Lua sees it: results, errors as values, and RFC 8291 Appendix A.
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;
local json = require "util.json";
local base64 = require "util.encodings".base64;

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
	local vector = read_vector();

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
	end);

	describe("encryption", function()
		it("decrypts RFC 8291 Appendix A's body", function()
			local body = assert(unbase64url(vector.body));
			local plaintext = assert(web_push.decrypt(vector.ua_private, vector.auth_secret, body));
			assert.equal(vector.plaintext_utf8, plaintext);
		end);

		it("round-trips and pads", function()
			local message = '{"account":"juliet@capulet.lit"}';
			local body = assert(web_push.encrypt(vector.ua_public, vector.auth_secret, message));
			assert.equal(16 + 4 + 1 + 65 + 256 + 16, #body);
			local plaintext = assert(web_push.decrypt(vector.ua_private, vector.auth_secret, body));
			assert.equal(message, plaintext:match("^(.-)%s*$"));
			assert.is_nil(plaintext:find("[^ ]", #message + 1));
		end);

		it("never makes a body over 4096 bytes", function()
			local body = assert(web_push.encrypt(vector.ua_public, vector.auth_secret, string.rep("x", 3000)));
			assert.equal(4096, #body);
			local ok, err = web_push.encrypt(vector.ua_public, vector.auth_secret, string.rep("x", 5000));
			assert.is_nil(ok);
			assert.matches("payload too large", err);
		end);

		it("refuses garbage without raising", function()
			local ok, err = web_push.decrypt(vector.ua_private, vector.auth_secret, "garbage");
			assert.is_nil(ok);
			assert.equal("body is not a valid aes128gcm message", err);
			ok, err = web_push.decrypt(string.rep("A", 43), vector.auth_secret, "garbage");
			assert.is_nil(ok);
			assert.equal("subscriber private key is invalid", err);
		end);
	end);

	describe("VAPID", function()
		it("makes an Authorization header for the endpoint's origin", function()
			local private, public = web_push.generate_keypair();
			local header = assert(web_push.vapid_header(private, "https://push.example.net:8443/a/b", "mailto:admin@example.org", 1000));
			local token, key = header:match("^vapid t=([%w_%-%.]+), k=([%w_%-]+)$");
			assert.equal(public, key);
			local claims = token:match("^[^.]+%.([^.]+)%.");
			local decoded = json.decode(unbase64url(claims));
			assert.equal("https://push.example.net:8443", decoded.aud);
			assert.equal(1000 + 12 * 3600, decoded.exp);
			assert.equal("mailto:admin@example.org", decoded.sub);
		end);

		it("refuses a subject push services refuse", function()
			local private = web_push.generate_keypair();
			local ok, err = web_push.vapid_header(private, "https://push.example.net/", "admin@example.org");
			assert.is_nil(ok);
			assert.equal("subject must be a mailto: or https: URL", err);
			assert.is_true(web_push.check_subject("mailto:admin@example.org"));
			ok, err = web_push.check_subject("mailto:admin@localhost");
			assert.is_nil(ok);
			assert.equal("subject must be a mailto: or https: URL", err);
		end);
	end);

	describe("sender", function()
		it("validates its options", function()
			local ok, err = web_push.new_sender({ subject = "mailto:a@example.org" });
			assert.is_nil(ok);
			assert.equal("private key is missing", err);
			local private = web_push.generate_keypair();
			ok, err = web_push.new_sender({ private_key = private, subject = "mailto:a@example.org", workers = 0 });
			assert.is_nil(ok);
			assert.matches("workers", err);
		end);

		it("refuses bad jobs with a message and closes cleanly", function()
			local private = web_push.generate_keypair();
			local sender = assert(web_push.new_sender({ private_key = private, subject = "mailto:a@example.org", workers = 1 }));
			local endpoint = "https://push.example.net/x";
			assert.is_number(sender:fd());
			local ok, err = sender:push(endpoint, "AAAA", vector.auth_secret, {});
			assert.is_nil(ok);
			assert.equal("p256dh has 3 bytes, expected 65", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, { a = 1 }, nil, nil, "no spaces");
			assert.is_nil(ok);
			assert.matches("topic", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, function() end);
			assert.is_nil(ok);
			assert.equal("payload must be a table or a string, not function", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, { f = function() end });
			assert.is_nil(ok);
			assert.matches("^payload cannot be JSON", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, { body = "\255 not UTF-8" });
			assert.is_nil(ok);
			assert.matches("^payload cannot be JSON", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, "{}", "a day");
			assert.is_nil(ok);
			assert.equal("ttl must be a number, not string", err);
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, "{}", 60, "urgent");
			assert.is_nil(ok);
			assert.equal("urgency must be very-low, low, normal or high", err);
			ok, err = sender:push(nil, vector.ua_public, vector.auth_secret, "{}");
			assert.is_nil(ok);
			assert.equal("endpoint is missing", err);
			assert.equal(0, sender:drain(function() error("no result was expected"); end));
			sender:close();
			ok, err = sender:push(endpoint, vector.ua_public, vector.auth_secret, "{}");
			assert.is_nil(ok);
			assert.equal("sender closed", err);
		end);

		local function drain_until(sender, count, handler)
			local seen = 0;
			for _ = 1, 500 do
				seen = seen + sender:drain(handler);
				if seen >= count then break; end
				require "socket".sleep(0.01);
			end
			return seen;
		end

		it("reports a refused endpoint through drain", function()
			local private = web_push.generate_keypair();
			local sender = assert(web_push.new_sender({ private_key = private, subject = "mailto:a@example.org", workers = 1, hosts = { "push.example.net" } }));
			local id = assert(sender:push("https://other.example.net/x", vector.ua_public, vector.auth_secret, { account = "a@b" }, 60, "high", "abc"));
			local results = {};
			drain_until(sender, 1, function (...) results[#results + 1] = table.pack(...); end);
			assert.equal(1, #results);
			local got_id, outcome, status, retry_after, reason, elapsed = table.unpack(results[1], 1, 6);
			assert.equal(id, got_id);
			assert.equal("rejected", outcome);
			assert.is_nil(status);
			assert.is_nil(retry_after);
			assert.equal("endpoint host is not in web_push_endpoint_hosts", reason);
			assert.is_number(elapsed);
			sender:close();
		end);

		it("hands every result over even when the handler raises an error", function()
			local private = web_push.generate_keypair();
			local sender = assert(web_push.new_sender({ private_key = private, subject = "mailto:a@example.org", workers = 1, hosts = { "push.example.net" } }));
			for _ = 1, 3 do
				assert(sender:push("https://other.example.net/x", vector.ua_public, vector.auth_secret, "{}"));
			end
			-- Wait until all three results are in, without taking them.
			local deadline = os.time() + 10;
			while sender:stats().in_flight + sender:stats().queued > 0 and os.time() < deadline do
				require "socket".sleep(0.01);
			end
			require "socket".sleep(0.05);
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
