-- Encrypts and signs with the native library for check_interop.py, which checks the output
-- with implementations not written here. Usage: lua5.4 produce.lua P256DH AUTH MESSAGE ENDPOINT SUBJECT
local library, p256dh, auth, message, endpoint, subject = ...;
local web_push = assert(package.loadlib(library, "luaopen_web_push"))();

local private, public = assert(web_push.generate_keypair());
local body = assert(web_push.testing.encrypt(p256dh, auth, message));
local header = assert(web_push.testing.vapid_header(private, endpoint, subject));

local function hex(bytes)
	return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()); end));
end

io.write(public, "\n", header, "\n", hex(body), "\n");
