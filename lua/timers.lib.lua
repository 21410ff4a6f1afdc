-- Every timer of the module goes through here: unload stops them all at once, and a callback
-- that fails is logged instead of being thrown into Prosody's timer loop.

local function new()
	local live = {};

	local function after(delay, callback)
		local timer;
		timer = module:add_timer(delay, function ()
			live[timer] = nil;
			local ok, err = pcall(callback);
			if not ok then
				module:log("error", "Timer failed: %s", err);
			end
		end);
		live[timer] = true;
		return timer;
	end

	local function cancel(timer)
		if timer then
			live[timer] = nil;
			timer:stop();
		end
	end

	local function stop_all()
		for timer in pairs(live) do timer:stop(); end
		live = {};
	end

	return { after = after, cancel = cancel, stop_all = stop_all };
end

return { new = new };
