-- Test helper for the end-to-end suite (never installed): another module using mod_web_push's
-- events, as README.markdown describes them.
--   web_push/registration: refuses endpoints whose path contains "/veto-registration".
--   web_push/push: vetoes pushes to endpoints containing "/veto-push"; amends the others' payload.
--   web_push/unregistered: logs the reason, for the test to read.
-- luacheck: read_globals module

module:hook("web_push/registration", function (event)
	if event.endpoint and event.endpoint:find("/veto-registration", 1, true) then
		return true;
	end
end);

module:hook("web_push/push", function (event)
	if event.endpoint and event.endpoint:find("/veto-push", 1, true) then
		return true;
	end
	event.payload["e2e-amended"] = event.username;
end);

module:hook("web_push/unregistered", function (event)
	module:log("info", "e2e: unregistered for %s: %s", tostring(event.username), tostring(event.reason));
end);
