-- luacheck configuration: `luacheck lua spec` (Makefile: make lint).
std = "lua54";
max_line_length = 150;
codes = true;
-- Plain output: tools that read the summary line (the before-stop check, CI logs) get no escapes.
color = false;

-- A Prosody module runs with `module` (the module API of its host) and `prosody` as globals.
files["lua/"] = {
	read_globals = {
		"prosody",
		-- The module API (core/moduleapi.lua of Prosody 0.12 and 13)
		"module.name",
		"module.host",
		"module.path",
		"module.resource_path",
		"module.reloading",
		"module.saved_state",
		"module.global",
		"module.log",
		"module.get_name",
		"module.get_host",
		"module.get_host_type",
		"module.get_directory",
		"module.get_option",
		"module.get_option_scalar",
		"module.get_option_string",
		"module.get_option_number",
		"module.get_option_boolean",
		"module.get_option_array",
		"module.get_option_set",
		"module.get_option_inherited_set",
		"module.get_option_path",
		"module.get_option_period",
		"module.get_option_enum",
		"module.get_option_integer",
		"module.hook",
		"module.hook_global",
		"module.hook_object_event",
		"module.hook_tag",
		"module.unhook",
		"module.unhook_object_event",
		"module.wrap_event",
		"module.wrap_global",
		"module.wrap_object_event",
		"module.fire_event",
		"module.add_feature",
		"module.add_identity",
		"module.add_extension",
		"module.add_item",
		"module.remove_item",
		"module.get_host_items",
		"module.handle_items",
		"module.provides",
		"module.depends",
		"module.require",
		"module.shared",
		"module.context",
		"module.send",
		"module.send_iq",
		"module.broadcast",
		"module.add_timer",
		"module.cron",
		"module.hourly",
		"module.daily",
		"module.weekly",
		"module.load_resource",
		"module.open_store",
		"module.measure",
		"module.metric",
		"module.set_status",
		"module.log_status",
		"module.get_status",
		"module.set_global",
	},
	globals = {
		-- What a module may define for Prosody and prosodyctl to call
		"module.load",
		"module.unload",
		"module.save",
		"module.restore",
		"module.add_host",
		"module.command",
	},
};

-- Specs: busted's globals; stand-in objects define methods with an implicit self they may not
-- use; assertions on long literals and on `ok, err` pairs that are checked one after another.
files["spec/"] = {
	std = "+busted",
	self = false,
	max_line_length = 180,
	ignore = { "432/self", "311/ok", "311/err" },
};
