-- The host's VAPID identity: its key pair, kept in storage (store "web_push_vapid") because a new
-- key breaks every browser subscription made for the old one; the subject push services see; and
-- `prosodyctl mod_web_push`, which shows, imports or rotates the key on purpose.

local STORE = "web_push_vapid";

local usage = [[
Usage: prosodyctl mod_web_push [key] <host>            print the host's VAPID public key
       prosodyctl mod_web_push import <host> <pem-file>  use an existing key (PKCS#8 or SEC1 PEM)
       prosodyctl mod_web_push rotate <host>           make a new key pair]];

-- The host's key pair, made and stored on first load. Raises an error (the module does not load)
-- when storage cannot be read or written, or the stored key is unusable: making a new key then
-- would silently break every subscription.
local function load(native, context)
	local store = context:open_store(STORE);
	local stored, err = store:get(nil);
	if not stored and err then
		error("cannot read the VAPID key from storage: " .. tostring(err));
	end
	if stored and stored.private then
		local private, public = native.import_private_key(stored.private);
		if not private then
			error("the stored VAPID key is unusable (" .. tostring(public) .. "); "
				.. "run prosodyctl mod_web_push import or rotate for " .. context.host);
		end
		return private, public;
	end
	local private, public = native.generate_keypair();
	local ok, write_err = store:set(nil, { private = private, created = os.time() });
	if not ok then
		error("cannot store the new VAPID key: " .. tostring(write_err));
	end
	module:log("info", "Made the VAPID key pair of %s", context.host);
	return private, public;
end

-- The VAPID subject: the configured one (raises an error when push services would refuse it),
-- else the first admin mailto: address of contact_info that they take, else https://<host> with
-- a warning that names the option.
local function subject(native, configured, contact_info)
	if configured then
		local ok, err = native.check_subject(configured);
		if not ok then error("web_push_vapid_subject: " .. tostring(err)); end
		return configured;
	end
	local admins = type(contact_info) == "table" and contact_info.admin;
	if type(admins) == "string" then admins = { admins }; end
	if type(admins) == "table" then
		for _, address in ipairs(admins) do
			if type(address) == "string" and address:match("^mailto:") and native.check_subject(address) then
				return address;
			end
		end
	end
	local fallback = "https://" .. module.host;
	module:log("warn", "web_push_vapid_subject is not set and contact_info has no admin mailto: address "
		.. "push services take; using %s (set web_push_vapid_subject)", fallback);
	return fallback;
end

local function show(native, store, target)
	local stored, read_err = store:get(nil);
	if not stored and read_err then
		print("Error: cannot read the key: " .. tostring(read_err));
		return 1;
	elseif not (stored and stored.private) then
		print("No key yet: Prosody makes one when it first loads the module on " .. target .. ".");
		return 1;
	end
	local public, key_err = native.public_key(stored.private);
	if not public then
		print("Error: the stored key is unusable (" .. key_err .. "); import or rotate it.");
		return 1;
	end
	print(public);
	return 0;
end

local function replace(native, store, target, action, file)
	local private, public;
	if action == "import" then
		local f, open_err = io.open(file, "r");
		if not f then
			print("Error: " .. tostring(open_err));
			return 1;
		end
		local text = f:read("a");
		f:close();
		private, public = native.import_private_key(text or "");
		if not private then
			print("Error: " .. public);
			return 1;
		end
	else
		private, public = native.generate_keypair();
	end
	local ok, write_err = store:set(nil, { private = private, created = os.time() });
	if not ok then
		print("Error: cannot store the key: " .. tostring(write_err));
		return 1;
	end
	print(public);
	print("Warning: every browser subscription made for the previous key stops working; clients must");
	print("subscribe again. Restart Prosody (or reload mod_web_push on " .. target .. ") to use the new key.");
	return 0;
end

-- prosodyctl mod_web_push key|import|rotate <host> [file]: the exit status.
local function command(arg, load_native)
	local action, target, file = arg[1], arg[2], arg[3];
	if action and not target and prosody.hosts[action] then
		action, target = "key", action; -- prosodyctl mod_web_push <host>
	end
	if not (action == "key" or action == "import" or action == "rotate") or not target
	or (action == "import" and not file) then
		print(usage);
		return 1;
	end
	if not (prosody.hosts[target] and prosody.hosts[target].type == "local") then
		print("Error: " .. target .. " is not a VirtualHost in Prosody's configuration");
		return 1;
	end
	local native, err = load_native();
	if not native then
		print("Error: " .. err);
		return 1;
	end
	require "core.storagemanager".initialize_host(target);
	local store = module:context(target):open_store(STORE);
	if action == "key" then
		return show(native, store, target);
	end
	return replace(native, store, target, action, file);
end

return { load = load, subject = subject, command = command };
