-- Which group chat messages push: the user's own setting for the room (XEP-0492, from their
-- bookmarks), else web_push_groupchat ("mentions", "all" or "none"). Under "on-mention" a message
-- pushes when it mentions the account, and is otherwise only counted (the message-count of the next
-- push). Private messages through a room are addressed to the user, so they push unless the room
-- is set to "never".
--
-- A message mentions the account when it carries a XEP-0372 mention of the account's JID or of its
-- occupant JID in the room (the only form a semi-anonymous room allows), a XEP-0461 reply to the
-- account's occupant JID, or the account's nickname in that room as a whole word of the body (ASCII
-- letters compared without case; a neighbouring letter, digit or "_", ASCII or not, makes it part
-- of a longer word, punctuation does not). The nickname is learned from the room's self-presence (status
-- 110), follows nick changes (303) and the room's rewrites (210: the self-presence comes from the
-- nick the room gave); until one is seen, the nick of the room's bookmark stands in.
--
-- Everything here runs only for accounts that have subscriptions.

local cache = require "util.cache";
local jid = require "util.jid";

local xmlns_muc_user = "http://jabber.org/protocol/muc#user";
local xmlns_reference = "urn:xmpp:reference:0";
local xmlns_reply = "urn:xmpp:reply:0";

local CACHE_SIZE = 10000;

-- What web_push_groupchat means for a room without a setting of its own.
local defaults = { mentions = "on-mention", all = "always", none = "never" };

-- Non-ASCII code points that separate words: Latin-1 punctuation and symbols, general and
-- supplemental punctuation (dashes, quotes, "…"), arrows and symbols, CJK and full-width
-- punctuation, emoji. Every other non-ASCII character counts as a letter: a nick next to "é" is
-- inside a word.
local separators = {
	{ 0x80, 0xBF }, { 0xD7, 0xD7 }, { 0xF7, 0xF7 }, { 0x2000, 0x206F }, { 0x2190, 0x2BFF }, { 0x2E00, 0x2E7F },
	{ 0x3000, 0x303F }, { 0xFE30, 0xFE4F }, { 0xFF01, 0xFF0F }, { 0xFF1A, 0xFF20 }, { 0x1F300, 0x1FAFF },
};

local function is_word_code(cp)
	if cp == nil then return false; end
	if cp < 128 then
		return cp == 95 or (cp >= 48 and cp <= 57) or (cp >= 65 and cp <= 90) or (cp >= 97 and cp <= 122);
	end
	for _, range in ipairs(separators) do
		if cp >= range[1] and cp <= range[2] then return false; end
	end
	return true;
end

-- The code point of the character that ends just before byte `at` of `text`, and of the one that
-- starts at byte `at` (nil at either end, or for bytes that are not UTF-8).
local function code_before(text, at)
	local start = at - 1;
	while start > 1 and start > at - 4 do
		local b = text:byte(start);
		if b < 0x80 or b >= 0xC0 then break; end
		start = start - 1;
	end
	if start < 1 then return nil; end
	local ok, cp = pcall(utf8.codepoint, text, start);
	return ok and cp or nil;
end

local function code_at(text, at)
	if at > #text then return nil; end
	local ok, cp = pcall(utf8.codepoint, text, at);
	return ok and cp or nil;
end

-- A body written to hold the nick inside other words over and over ("aaaa…" for the nick "a")
-- would have every place looked at on Prosody's thread; a real message names it a few times.
local MAX_PLACES = 64;

-- Whether `nick` is in `body` as a whole word (ASCII letters compared without case). The edges of
-- the nick that are not letters themselves ("[bot]") need no separator.
local function has_word(body, nick)
	local haystack, needle = body:lower(), nick:lower();
	local n = #needle;
	if n == 0 then return false; end
	local first_word = is_word_code(code_at(needle, 1));
	local last_word = is_word_code(code_before(needle, n + 1));
	local init = 1;
	for _ = 1, MAX_PLACES do
		local at = haystack:find(needle, init, true);
		if not at then return false; end
		if not (first_word and is_word_code(code_before(haystack, at)))
		and not (last_word and is_word_code(code_at(haystack, at + n))) then
			return true;
		end
		init = at + 1;
	end
	return false;
end

-- The JID an xmpp: URI names (percent-escapes decoded), or nil.
local function uri_jid(uri)
	if type(uri) ~= "string" or uri:sub(1, 5) ~= "xmpp:" then return nil; end
	local address = uri:sub(6):gsub("%?.*$", ""):gsub("%%(%x%x)", function (hex)
		return string.char(tonumber(hex, 16));
	end);
	return jid.prep(address);
end

-- options: settings (settings.lib), mode (web_push_groupchat), body_of(message) (notices.lib's:
-- a message's body text).
local function new(options)
	local settings, default, body_of = options.settings, defaults[options.mode] or "on-mention", options.body_of;
	local nicks = cache.new(CACHE_SIZE); -- user -> { [room] = nick }

	local function mentions(message, account, room, nick)
		-- The occupant JID is made only for a message that carries a reference or a reply.
		local occupant;
		local function is_us(address)
			if address == nil then return false; end
			if address == account then return true; end
			if nick and occupant == nil then occupant = jid.prep(room .. "/" .. nick) or false; end
			return occupant and address == occupant;
		end
		for reference in message:childtags("reference", xmlns_reference) do
			if reference.attr.type == "mention" and is_us(uri_jid(reference.attr.uri)) then return true; end
		end
		local reply = message:get_child("reply", xmlns_reply);
		if reply and type(reply.attr.to) == "string" and is_us(jid.prep(reply.attr.to)) then return true; end
		if not nick then return false; end
		local body = body_of(message);
		return body ~= nil and has_word(body, nick);
	end

	-- What a message from a room (kind "groupchat") or through it ("private") means for `user`:
	-- "push", "count" (counted in the next push) or nil (nothing).
	local function verdict(user, account, message, kind)
		local from = message.attr.from;
		if type(from) ~= "string" then return nil; end
		local node, room_host, nick_from = jid.split(from);
		local room = jid.join(node, room_host);
		local bookmark = settings.bookmark(user, room);
		local setting = bookmark and bookmark.setting;
		if kind == "private" then -- addressed to the user: only the room's own "never" holds it back
			return setting ~= "never" and "push" or nil;
		end
		setting = setting or default;
		local learned = nicks:get(user);
		local nick = learned and learned[room] or bookmark and bookmark.nick;
		if nick and nick_from == nick then return nil; end -- the room echoing the user's own message
		if setting == "always" then return "push"; end
		if setting == "never" then return nil; end
		return mentions(message, account, room, nick) and "push" or "count";
	end

	-- The user's nick in a room, when a presence to one of their sessions is the room's word on it
	-- (status 110: an entry or a rewrite, 210; with 303, a change): the room and the nick, else nil.
	-- Cheap for the presences of other occupants, which carry no 110.
	local function own_nick(stanza)
		local x = stanza:get_child("x", xmlns_muc_user);
		if not x then return nil; end
		local self_presence, changed = false, false;
		for status in x:childtags("status") do
			local code = status.attr.code;
			if code == "110" then self_presence = true; elseif code == "303" then changed = true; end
		end
		if not self_presence then return nil; end
		local node, room_host, nick = jid.split(stanza.attr.from);
		if not (node and nick) then return nil; end
		if stanza.attr.type == "unavailable" then
			if not changed then return nil; end -- left the room: the nick stays for its other sessions
			local item = x:get_child("item");
			nick = item and item.attr.nick;
			if not nick then return nil; end
		elseif stanza.attr.type ~= nil then
			return nil;
		end
		return jid.join(node, room_host), nick;
	end

	local function learn(user, room, nick)
		local rooms = nicks:get(user);
		if not rooms then
			rooms = {};
			nicks:set(user, rooms);
		end
		rooms[room] = nick;
	end

	local function forget(user)
		nicks:set(user, nil);
	end

	-- The nicks learned, across a module reload (hibernated sessions will not join again).
	local function save()
		local saved = {};
		for user, rooms in nicks:items() do saved[user] = rooms; end
		return saved;
	end

	local function restore(saved)
		if type(saved) ~= "table" then return; end
		for user, rooms in pairs(saved) do
			if type(user) == "string" and type(rooms) == "table" then nicks:set(user, rooms); end
		end
	end

	return { verdict = verdict, own_nick = own_nick, learn = learn, forget = forget, save = save, restore = restore };
end

return { new = new };
