-- A stand-in of mod_pep for the specs: per account a real util.pubsub service (Prosody's own, with
-- items kept in memory), made on first use as mod_pep's get_pep_service does, announced as a
-- "pep-service" item of the host (what module:handle_items follows), with mod_pep's node defaults
-- (one persistent node per namespace, autocreated on publish) and the account as its owner.
-- Reads of a node's items are counted: a push must never read them.
local pubsub = require "util.pubsub";
local st = require "util.stanza";

local xmlns_pubsub = "http://jabber.org/protocol/pubsub";

local M = {};

-- mod_pep of `host` in `world`: the table module:depends("pep") returns.
function M.new(world, host)
	local services = {};
	local mod = { reads = 0 };

	function mod.get_pep_service(user)
		local service = services[user];
		if service then return service; end
		local owner = user .. "@" .. host;
		service = pubsub.new({
			pep_username = user;
			node_defaults = { max_items = 256; persist_items = true; access_model = "presence" };
			autocreate_on_publish = true;
			get_affiliation = function (jid)
				if jid == owner or (type(jid) == "string" and jid:sub(1, #owner + 1) == owner .. "/") then return "owner"; end
			end;
		});
		local get_items = service.get_items;
		service.get_items = function (...)
			mod.reads = mod.reads + 1;
			return get_items(...);
		end;
		services[user] = service;
		world:add_host_item(host, "pep-service", { service = service, jid = owner });
		return service;
	end

	-- A client of `user` (its full JID: `actor`) publishes `payload` (XML text) as item `id`.
	function mod.publish(user, actor, node, id, payload)
		local item = st.stanza("item", { xmlns = xmlns_pubsub, id = id });
		item:add_child(world.parse(payload));
		return assert(mod.get_pep_service(user):publish(node, actor, id, item));
	end

	function mod.retract(user, actor, node, id)
		return assert(mod.get_pep_service(user):retract(node, actor, id));
	end

	function mod.delete(user, actor, node)
		return assert(mod.get_pep_service(user):delete(node, actor));
	end

	-- mod_pep's cache lets a service go (pep_service_cache_size): the item goes too.
	function mod.evict(user)
		local service = services[user];
		if not service then return; end
		services[user] = nil;
		world:remove_host_item(host, "pep-service", service);
	end

	return mod;
end

return M;
