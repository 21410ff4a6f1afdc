-- The web client files over Prosody's HTTP server (DESIGN.md, "Web client files"): /web_push/sw.js
-- (the service worker) and /web_push/converse-web-push.js (the Converse.js plugin), from the folder
-- `web/` that `make` puts beside mod_web_push.lua. The path is the HTTP app "web_push" (admins move
-- it with http_paths = { web_push = "/..." }).
--
-- The files are read once, at load: an upgraded module serves its new files after a reload or
-- restart, like its Lua code. Browsers revalidate them on every use (no-cache, with an ETag), so
-- they pick the new ones up at once, without a stale copy in a cache.

local hashes = require "util.hashes";

local FILES = { "sw.js", "converse-web-push.js" };
local CONTENT_TYPE = "text/javascript; charset=utf-8";

local function read(path)
	local f, err = io.open(path, "rb");
	if not f then
		return nil, err;
	end
	local content, read_err = f:read("a");
	f:close();
	if not content then
		return nil, read_err;
	end
	return content;
end

-- If-None-Match may list several tags, weak ones with W/, or "*".
local function matches(header, etag)
	if type(header) ~= "string" then
		return false;
	end
	for tag in header:gmatch("[^,%s]+") do
		if tag == "*" or tag:gsub("^W/", "") == etag then
			return true;
		end
	end
	return false;
end

local function file_handler(content, is_worker)
	local etag = '"' .. hashes.sha256(content, true):sub(1, 32) .. '"';
	return function (event)
		local request, response = event.request, event.response;
		local headers = response.headers;
		headers.content_type = CONTENT_TYPE;
		headers.cache_control = "no-cache";
		headers.etag = etag;
		headers.x_content_type_options = "nosniff";
		if is_worker then
			-- The plugin registers the worker below /web_push/ by default; this lets a client
			-- choose a wider scope (web_push_scope) without serving the file elsewhere.
			headers.service_worker_allowed = "/";
		end
		if matches(request.headers.if_none_match, etag) then
			response.status_code = 304;
			return "";
		end
		return content;
	end
end

local function serve(directory)
	local route, served = {}, {};
	for _, name in ipairs(FILES) do
		local content, err = read(directory .. "/" .. name);
		if content then
			route["GET /" .. name] = file_handler(content, name == "sw.js");
			served[#served + 1] = name;
		else
			module:log("warn", "Cannot serve the web client file %s: %s", name, err);
		end
	end
	if not served[1] then
		module:log("warn", "No web client files in %s; nothing served over HTTP", directory);
		return;
	end
	-- No module:depends("http"): loading mod_web_push must not open HTTP ports by itself. A server
	-- with a web client runs Prosody's HTTP server anyway (mod_websocket, mod_bosh or
	-- mod_http_files load mod_http), which then serves these routes too.
	module:provides("http", { name = "web_push", default_path = "/web_push", route = route });
	module:log("debug", "Serving %s over HTTP", table.concat(served, ", "));
end

return { serve = serve };
