-- The user's own per-room notification settings (XEP-0492, "Chat notification settings") and the
-- nickname they gave each room, both from their XEP-0402 bookmarks: PEP node urn:xmpp:bookmarks:1
-- of mod_pep's service for the account, one item per room (item id = the room's JID), each a
-- <conference/> with an optional <nick/> and, inside <extensions/>, a <notify/> element.
--
-- An account's bookmarks are read once, at the first push that needs them, and then followed
-- through the service's own events (published, retracted, node purged or deleted): a push never
-- reads storage. Accounts are kept in a bounded cache; one that falls out is read again at its
-- next need.
--
-- Which element applies to a web browser (XEP-0492 0.2.0, urn:xmpp:notification-settings:1): the
-- one with identity-category "client" and identity-type "web", else the one with category "client"
-- and no type, else the fallback without attributes. Elements for other identities do not apply.
-- 0.1.0 (urn:xmpp:notification-settings:0, still written by some clients) names the kind of
-- client in one attribute, client-type: "web", else the fallback. Open cases, decided as a user
-- would expect:
--   - a bookmark with both namespaces: the newer (:1) decides, :0 only when :1 says nothing for us;
--   - two elements on the same level (a client wrote both <always/> and <never/>): the quieter
--     wins (never, then on-mention, then always): the user asked for silence somewhere;
--   - <advanced/> children are other clients' business; the element's own name is the setting.

local cache = require "util.cache";

local xmlns_bookmarks = "urn:xmpp:bookmarks:1";
local xmlns_notify_1 = "urn:xmpp:notification-settings:1";
local xmlns_notify_0 = "urn:xmpp:notification-settings:0";

local CACHE_SIZE = 10000;

local quietness = { always = 1, ["on-mention"] = 2, never = 3 };

-- How well an element of 0.2.0 fits a web browser: 3 exact, 2 its category, 1 the fallback, 0 not ours.
local function fit_1(element)
	local category, kind = element.attr["identity-category"], element.attr["identity-type"];
	if category == nil then
		return kind == nil and 1 or 0; -- a type without a category is not allowed: not ours
	elseif category ~= "client" then
		return 0;
	elseif kind == nil then
		return 2;
	end
	return kind == "web" and 3 or 0;
end

-- 0.1.0: client-type "web", else the fallback.
local function fit_0(element)
	local kind = element.attr["client-type"];
	if kind == nil then return 1; end
	return kind == "web" and 2 or 0;
end

-- The setting a <notify/> element holds for a web browser, or nil.
local function pick(notify, fit)
	local best, best_fit = nil, 0;
	for element in notify:childtags(nil, notify.attr.xmlns) do
		local name = element.name;
		if quietness[name] then
			local f = fit(element);
			if f > best_fit or (f > 0 and f == best_fit and quietness[name] > quietness[best]) then
				best, best_fit = name, f;
			end
		end
	end
	return best;
end

-- What one bookmark says: { setting =, nick = }, or nil when it says nothing we use.
local function read_conference(conference)
	if not conference then return nil; end
	local nick = conference:get_child_text("nick", xmlns_bookmarks);
	if nick == "" then nick = nil; end
	local setting;
	local extensions = conference:get_child("extensions", xmlns_bookmarks);
	if extensions then
		local notify = extensions:get_child("notify", xmlns_notify_1);
		setting = notify and pick(notify, fit_1);
		if not setting then
			notify = extensions:get_child("notify", xmlns_notify_0);
			setting = notify and pick(notify, fit_0);
		end
	end
	if setting or nick then return { setting = setting, nick = nick }; end
end

local function conference_of(item)
	if type(item) ~= "table" or not item.get_child then return nil; end
	return item:get_child("conference", xmlns_bookmarks);
end

-- options: pep (mod_pep's environment, with get_pep_service; nil when mod_pep is not there).
local function new(options)
	local pep = options.pep;
	local accounts = cache.new(CACHE_SIZE); -- user -> { [room] = { setting =, nick = } }

	-- Every bookmark of the account, from its PEP service (storage), once.
	local function load(user)
		local rooms = {};
		accounts:set(user, rooms);
		if not pep then return rooms; end
		local ok, service = pcall(pep.get_pep_service, user);
		if not (ok and service) then
			module:log("warn", "Cannot read the bookmarks of %s: %s", user, tostring(service));
			return rooms;
		end
		local ok_read, got, items = pcall(service.get_items, service, xmlns_bookmarks, true);
		if not ok_read then got, items = false, got; end
		if not got then
			-- No bookmarks node: nothing set. Anything else is worth a line; the next
			-- publish still updates what is kept.
			if items ~= "item-not-found" then
				module:log("warn", "Cannot read the bookmarks of %s: %s", user, tostring(items));
			end
			return rooms;
		end
		for _, id in ipairs(items) do
			rooms[id] = read_conference(conference_of(items[id]));
		end
		return rooms;
	end

	local function rooms_of(user)
		return accounts:get(user) or load(user);
	end

	-- What the account's bookmark of a room says, or nil: { setting = its XEP-0492 setting
	-- ("always", "on-mention", "never" or nil), nick = the nickname it gives the room (or nil) }.
	local function bookmark(user, room)
		return rooms_of(user)[room];
	end

	-- A bookmark published (added or changed). Accounts not read yet are left to their first need,
	-- which reads what was just stored.
	local function published(user, id, item)
		local rooms = accounts:get(user);
		if rooms and type(id) == "string" then
			rooms[id] = read_conference(conference_of(item));
		end
	end

	local function retracted(user, id)
		local rooms = accounts:get(user);
		if rooms and type(id) == "string" then rooms[id] = nil; end
	end

	-- The node was purged or deleted: no bookmarks left.
	local function cleared(user)
		if accounts:get(user) then accounts:set(user, {}); end
	end

	local function forget(user)
		accounts:set(user, nil);
	end

	return {
		node = xmlns_bookmarks, bookmark = bookmark, published = published, retracted = retracted, cleared = cleared,
		forget = forget,
	};
end

return { new = new };
