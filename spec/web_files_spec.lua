-- The web client files over Prosody's HTTP server (lua/web_files.lib.lua, DESIGN.md "Web client
-- files"), against the stand-in: the paths, the bytes `make` put beside the module, the headers a
-- service worker and an upgrading admin need, and revalidation with the ETag.
package.path = "spec/helpers/?.lua;" .. package.path;
local standin = require "standin";

local WEB = "build/mod_web_push/web/";

local function file(name)
	local f = assert(io.open(WEB .. name, "rb"), WEB .. name .. " is missing: run make first");
	local content = f:read("a");
	f:close();
	return content;
end

local function http_app(world)
	for _, provided in ipairs(world.provided) do
		if provided.kind == "http" then return provided.item; end
	end
end

-- What mod_http hands a route handler: the request's headers as net.http.parser names them
-- (lower case, dashes as underscores), a response whose headers the handler fills in.
local function get(app, path, request_headers)
	local handler = app.route["GET " .. path];
	assert(handler, "no route for GET " .. path);
	local response = { status_code = 200, headers = {} };
	local body = handler({ request = { method = "GET", path = path, headers = request_headers or {} }, response = response });
	return response, body;
end

describe("web client files", function ()
	it("are served at /web_push/ by the module, without loading mod_http itself", function ()
		local world = standin.setup();
		local app = http_app(world);
		assert.truthy(app, "the module provides no HTTP app");
		assert.equal("web_push", app.name);
		assert.equal("/web_push", app.default_path);
		-- Loading mod_web_push must not open HTTP ports; mod_websocket or mod_bosh do that.
		for _, loaded in ipairs(world.depends) do
			assert.not_equal("http", loaded.name);
		end
		local routes = {};
		for route in pairs(app.route) do routes[#routes + 1] = route; end
		table.sort(routes);
		assert.same({ "GET /converse-web-push.js", "GET /sw.js" }, routes);
	end);

	it("are the files make put beside the module, as JavaScript that is revalidated on each use", function ()
		local app = http_app(standin.setup());
		for _, name in ipairs({ "sw.js", "converse-web-push.js" }) do
			local response, body = get(app, "/" .. name);
			assert.equal(200, response.status_code);
			assert.equal(file(name), body);
			assert.equal("text/javascript; charset=utf-8", response.headers.content_type);
			assert.equal("no-cache", response.headers.cache_control);
			assert.equal("nosniff", response.headers.x_content_type_options);
			assert.truthy(response.headers.etag:match('^"[0-9a-f]+"$'), response.headers.etag);
		end
	end);

	it("let the service worker take a scope wider than its folder; the plugin needs no such header", function ()
		local app = http_app(standin.setup());
		assert.equal("/", get(app, "/sw.js").headers.service_worker_allowed);
		assert.is_nil(get(app, "/converse-web-push.js").headers.service_worker_allowed);
	end);

	it("answer 304 to a browser that has the current version, 200 to one with another", function ()
		local app = http_app(standin.setup());
		local etag = get(app, "/sw.js").headers.etag;
		for _, header in ipairs({ etag, "W/" .. etag, '"other", ' .. etag, "*" }) do
			local response, body = get(app, "/sw.js", { if_none_match = header });
			assert.equal(304, response.status_code, header);
			assert.equal("", body);
			assert.equal(etag, response.headers.etag);
		end
		local response, body = get(app, "/sw.js", { if_none_match = '"0123"' });
		assert.equal(200, response.status_code);
		assert.equal(file("sw.js"), body);
		assert.are_not.equal(etag, get(app, "/converse-web-push.js").headers.etag);
	end);

	it("that are missing are logged, and nothing is served for them", function ()
		local world, host = standin.setup();
		local before = #world.provided;
		host.api:require("web_files").serve("/nonexistent/web");
		assert.equal(before, #world.provided, "an HTTP app without files was provided");
		local errors, warnings = 0, 0;
		for _, entry in ipairs(world.logs) do
			if entry.level == "warn" and entry.text:find("Cannot serve the web client file", 1, true) then errors = errors + 1; end
			if entry.level == "warn" and entry.text:find("No web client files in /nonexistent/web", 1, true) then warnings = warnings + 1; end
		end
		assert.equal(2, errors);
		assert.equal(1, warnings);
	end);
end);
