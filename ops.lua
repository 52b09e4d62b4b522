-- The server-side operations of github.com/redis-memory/memory: one script,
-- loaded once, that applies a change to one key atomically and exactly once.
--
-- KEYS[1] is the key. ARGV[1] names the operation; ARGV[2] is its identity,
-- "writer.seq"; ARGV[3] the lowest seq of the writer's operations on the key
-- whose outcome the writer does not know yet; ARGV[4] the operation's
-- last_modified, in decimal digits; ARGV[5] the TTL to give the key in
-- milliseconds, "0" to keep its own; ARGV[6] and on, the operation's own
-- arguments.
--
-- A value is a string holding the envelope
--
--   {"value": V, "ops": "R", "last_modified": N}
--
-- where R records the identities of recent operations, so that one sent
-- again, after its reply was lost, is recognised as applied even when other
-- writers changed the value since. The Python library reads such a value as
-- any other, and writes {"value": V, "last_modified": N}, which these
-- operations read too; any other JSON is a bare value. V is never decoded:
-- the operations locate and splice its JSON text, so numbers keep every
-- digit.
--
-- Replies: {1, result, previous R, new R, new N} when applied; {2, result}
-- when the identity is in R already; {0, the current string} when a
-- compare-and-set found another value. Refusals are error replies: DECODE
-- (the key holds no JSON value the operation can change), RANGE (an index or
-- a number out of range), EMPTY (pop of an empty list).
--
-- Two operations are last-writer-wins instead, and carry no identity: put
-- and expire, which the offline queue delivers.

local key, op, id = KEYS[1], ARGV[1], ARGV[2]
local writer, seq = string.match(id, '^(%w+)%.(%d+)$')
local low, stamp, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]

-- How long, and how many, identities R keeps, beyond those the writers
-- still need: an operation sent again later than that may apply twice.
local HORIZON, MAXRECORD = 86400, 128

-- A result larger than MAXRESULT bytes is not kept in R: an operation that
-- returns one and is sent again after its reply was lost is known to have
-- applied, but its result is gone.
local MAXRESULT = 8192

-- refuse ends the operation with an error reply of the given kind, before
-- anything is written.
local function refuse(kind, msg)
	error(kind .. ' ' .. msg, 0)
end

-- JSON text scanning. Positions are 1-based indexes into s.

local function space(s, i)
	return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
end

-- endString returns the index after the string whose opening quote is at i.
local function endString(s, i)
	local j = i + 1
	while true do
		local q = string.find(s, '["\\]', j)
		if not q then
			refuse('DECODE', 'unterminated string')
		end
		if string.byte(s, q) == 34 then
			return q + 1
		end
		j = q + 2
	end
end

-- endValue returns the index after the JSON value that starts at i.
local function endValue(s, i)
	local c = string.byte(s, i)
	if c == 34 then
		return endString(s, i)
	end
	if c == 91 or c == 123 then
		local depth, j = 0, i
		while true do
			local p = string.find(s, '[%[%]{}"]', j)
			if not p then
				refuse('DECODE', 'unterminated array or object')
			end
			local b = string.byte(s, p)
			if b == 34 then
				j = endString(s, p)
			else
				depth = depth + ((b == 91 or b == 123) and 1 or -1)
				j = p + 1
				if depth == 0 then
					return j
				end
			end
		end
	end
	local e = string.find(s, '[,%]}: \t\r\n]', i) or (#s + 1)
	if e == i then
		refuse('DECODE', 'expected a value at byte ' .. i)
	end
	return e
end

-- items returns the spans {start, end+1} of the members of the array or
-- object text v: elements, or keys (with the value span in [3] and [4]).
local function items(v)
	local list, i = {}, space(v, 2)
	local close = string.byte(v, 1) == 91 and 93 or 125
	while string.byte(v, i) ~= close do
		local item = {i, endValue(v, i)}
		i = space(v, item[2])
		if close == 125 then
			if string.byte(v, i) ~= 58 then
				refuse('DECODE', 'expected : at byte ' .. i)
			end
			item[3] = space(v, i + 1)
			item[4] = endValue(v, item[3])
			i = space(v, item[4])
		end
		list[#list + 1] = item
		if string.byte(v, i) == 44 then
			i = space(v, i + 1)
		elseif string.byte(v, i) ~= close then
			refuse('DECODE', 'expected , at byte ' .. i)
		end
	end
	return list
end

-- unquote returns the text of a JSON string token.
local function unquote(token)
	if not string.find(token, '\\', 1, true) then
		return string.sub(token, 2, -2)
	end
	return cjson.decode(token)
end

-- Envelopes.

-- greater compares two non-negative decimal numbers, as digits: a > b.
local function greater(a, b)
	if #a ~= #b then
		return #a > #b
	end
	return a > b
end

-- trailer finds the end of an envelope laid out as this library and the
-- Python library write it, reading windows of growing size from the end of
-- the string: read(from) returns it from the 1-based index from. It returns
-- the index of the ',' that ends the value, the record and the stamp, or
-- nothing for another layout.
local function trailer(len, read)
	for _, w in ipairs({512, 8192, 131072, len}) do
		local from = math.max(1, len - w + 1)
		local tail = read(from)
		local i, _, r, n = string.find(tail, ', "ops": "([%w%. ]*)", "last_modified": (%d+)}$')
		if i then
			return from + i - 1, r, n
		end
		-- A window that starts inside a long record cannot tell it from
		-- a value that ends with a string: read a larger one.
		if from == 1 or not string.find(tail, '^[%w%. ]*"') then
			i, _, n = string.find(tail, ', "last_modified": (%d+)}$')
			if i then
				return from + i - 1, '', n
			end
		end
		if from == 1 then
			return nil
		end
	end
end

-- split returns the value text, the record and the stamp of the stored
-- string s.
local function split(s)
	if string.sub(s, 1, 10) == '{"value": ' then
		local i, r, n = trailer(#s, function(from) return string.sub(s, from) end)
		if i then
			return string.sub(s, 11, i - 1), r, n
		end
	end
	local i = space(s, 1)
	if string.byte(s, i) == 123 then
		local v, r, n
		for _, m in ipairs(items(string.sub(s, i))) do
			local name = unquote(string.sub(s, i + m[1] - 1, i + m[2] - 2))
			local text = string.sub(s, i + m[3] - 1, i + m[4] - 2)
			if name == 'value' then
				v = text
			elseif name == 'last_modified' then
				n = string.match(text, '^%d+$') or '0'
			elseif name == 'ops' then
				r = string.match(text, '^"([%w%. ]*)"$')
			end
		end
		if v and n then
			return v, r or '', n
		end
	end
	return s, '', '0'
end

local function envelope(v, r, n)
	return '{"value": ' .. v .. ', "ops": "' .. r .. '", "last_modified": ' .. n .. '}'
end

-- kind returns the first byte of the value text v: '[', '{', 'n', ...
local function kind(v)
	return string.sub(v, space(v, 1), space(v, 1))
end

-- Records.

local now

-- find returns the result of this operation, hex-encoded, "z" when it was
-- too large to keep, if R records it.
local function find(r)
	for w, s, _, x in string.gmatch(r, '(%w+)%.(%d+)%.(%d+)%.?(%w*)') do
		if w == writer and s == seq then
			return x
		end
	end
end

local function hex(s)
	return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

-- record returns R with this operation added, and its result if any,
-- less what no writer needs any more: the writer's own operations whose
-- outcome it knows, and any beyond the horizon or the bound.
local function record(r, result)
	now = now or tonumber(redis.call('TIME')[1])
	local kept = {}
	for e, w, s, t in string.gmatch(r, '((%w+)%.(%d+)%.(%d+)%.?%w*)') do
		if not (w == writer and tonumber(s) < low) and tonumber(t) > now - HORIZON then
			kept[#kept + 1] = e
		end
	end
	local entry = writer .. '.' .. seq .. '.' .. now
	if result and #result > MAXRESULT then
		entry = entry .. '.z'
	elseif result and result ~= '' then
		entry = entry .. '.' .. hex(result)
	end
	kept[#kept + 1] = entry
	local from = math.max(1, #kept - MAXRECORD + 1)
	return table.concat(kept, ' ', from, #kept)
end

local function later(n)
	if greater(n, stamp) then
		return n
	end
	return stamp
end

-- Reading and writing the key.

local function get()
	local s = redis.pcall('GET', key)
	if type(s) == 'table' then
		refuse('DECODE', s.err or 'not a string')
	end
	return s
end

local function expire()
	if ttl ~= '0' then
		redis.call('PEXPIRE', key, ttl)
	end
end

local function store(v, r, n)
	if ttl == '0' then
		redis.call('SET', key, envelope(v, r, n), 'KEEPTTL')
	else
		redis.call('SET', key, envelope(v, r, n), 'PX', ttl)
	end
end

-- change applies fn to the value of the key, a JSON text of the kind want
-- ('[' or '{'; empty when absent or null), writes what fn returns, and
-- replies. fn returns the new value text and the operation's result.
local function change(want, empty, fn)
	local s = get()
	local v, r, n = empty, '', '0'
	if s then
		v, r, n = split(s)
		local x = find(r)
		if x then
			return {2, x}
		end
		if kind(v) == 'n' then
			v = empty
		elseif kind(v) ~= want then
			refuse('DECODE', 'the value is not a JSON ' .. (want == '[' and 'array' or 'object'))
		end
	end
	local next, result = fn(v)
	if not next then
		return {1, result or '', r, r, n}
	end
	local nr, nn = record(r, result), later(n)
	store(next, nr, nn)
	return {1, result or '', r, nr, nn}
end

-- The operations.

local ops = {}

-- append: ARGV[6] the new elements, JSON texts joined by ','. Written in
-- place, at the end of the string: its cost does not grow with the list.
function ops.append()
	local elements = ARGV[6]
	local len = redis.pcall('STRLEN', key)
	if type(len) == 'table' then
		refuse('DECODE', len.err)
	end
	if len > 0 and redis.call('GETRANGE', key, 0, 10) == '{"value": [' then
		local tail = ''
		local i, r, n = trailer(len, function(from)
			tail = redis.call('GETRANGE', key, from - 1, -1)
			return tail
		end)
		-- The ']' that closes the list ends the value; whether the list
		-- is empty shows before it, in the last window read.
		local close = i and i - 1
		local inTail = close and close - (len - #tail)
		local before = inTail and inTail > 1 and string.match(string.sub(tail, 1, inTail - 1), '([^ \t\r\n])[ \t\r\n]*$')
		if close and string.sub(tail, inTail, inTail) == ']' and before then
			local x = find(r)
			if x then
				return {2, x}
			end
			local nr, nn = record(r, nil), later(n)
			local rest = (before == '[' and '' or ',') .. elements .. '], "ops": "' .. nr .. '", "last_modified": ' .. nn .. '}'
			if #rest >= len - close + 1 then
				redis.call('SETRANGE', key, close - 1, rest)
				expire()
				return {1, '', r, nr, nn}
			end
		end
	end
	return change('[', '[]', function(v)
		local list = items(v)
		if #list == 0 then
			return '[' .. elements .. ']'
		end
		return string.sub(v, 1, list[#list][2] - 1) .. ',' .. elements .. ']'
	end)
end

local function index(list, i, open)
	i = tonumber(i)
	local max = open and #list or #list - 1
	if i < 0 or i > max then
		refuse('RANGE', 'index ' .. i .. ' out of range with length ' .. #list)
	end
	return i + 1
end

-- insert: ARGV[6] the index, ARGV[7] the element.
function ops.insert()
	return change('[', '[]', function(v)
		local list = items(v)
		local i = index(list, ARGV[6], true)
		if i > #list then
			if #list == 0 then
				return '[' .. ARGV[7] .. ']'
			end
			return string.sub(v, 1, list[#list][2] - 1) .. ',' .. ARGV[7] .. ']'
		end
		return string.sub(v, 1, list[i][1] - 1) .. ARGV[7] .. ',' .. string.sub(v, list[i][1])
	end)
end

-- set: ARGV[6] the index, ARGV[7] the element.
function ops.set()
	return change('[', '[]', function(v)
		local list = items(v)
		local i = index(list, ARGV[6], false)
		return string.sub(v, 1, list[i][1] - 1) .. ARGV[7] .. string.sub(v, list[i][2])
	end)
end

-- cut returns v without its element i of list, and that element.
local function cut(v, list, i)
	local element = string.sub(v, list[i][1], list[i][2] - 1)
	if #list == 1 then
		return '[]', element
	end
	if i == #list then
		return string.sub(v, 1, list[i - 1][2] - 1) .. ']', element
	end
	return string.sub(v, 1, list[i][1] - 1) .. string.sub(v, list[i + 1][1]), element
end

-- remove: ARGV[6] the index. The result is the element removed.
function ops.remove()
	return change('[', '[]', function(v)
		local list = items(v)
		return cut(v, list, index(list, ARGV[6], false))
	end)
end

-- pop: the result is the last element.
function ops.pop()
	return change('[', '[]', function(v)
		local list = items(v)
		if #list == 0 then
			refuse('EMPTY', 'the list is empty')
		end
		return cut(v, list, #list)
	end)
end

-- member returns the index in list of the member of object v named name.
local function member(v, list, name)
	for i, m in ipairs(list) do
		if unquote(string.sub(v, m[1], m[2] - 1)) == name then
			return i
		end
	end
end

-- mapset: ARGV[6] and on, triples of a key, the key as a JSON string and
-- the value's JSON text, set in order.
function ops.mapset()
	return change('{', '{}', function(v)
		for a = 6, #ARGV, 3 do
			local list = items(v)
			local i = member(v, list, ARGV[a])
			if i then
				v = string.sub(v, 1, list[i][3] - 1) .. ARGV[a + 2] .. string.sub(v, list[i][4])
			elseif #list == 0 then
				v = '{' .. ARGV[a + 1] .. ':' .. ARGV[a + 2] .. '}'
			else
				v = string.sub(v, 1, list[#list][4] - 1) .. ',' .. ARGV[a + 1] .. ':' .. ARGV[a + 2] .. '}'
			end
		end
		return v
	end)
end

-- mapdel: ARGV[6] the key to delete.
function ops.mapdel()
	return change('{', '{}', function(v)
		local list = items(v)
		local i = member(v, list, ARGV[6])
		if not i then
			return nil
		end
		if #list == 1 then
			return '{}'
		end
		if i == #list then
			return string.sub(v, 1, list[i - 1][4] - 1) .. '}'
		end
		return string.sub(v, 1, list[i][1] - 1) .. string.sub(v, list[i + 1][1])
	end)
end

-- Integers as a sign and a magnitude in two parts, hi * 1e9 + lo, each
-- exact in a Lua number.
local BILLION = 1000000000
local MAXHI, MAXLO = 9223372036, 854775807

local function integer(text)
	local sign, digits = string.match(text, '^%s*(%-?)(%d+)%s*$')
	if not digits or (#digits > 1 and string.sub(digits, 1, 1) == '0') then
		return nil
	end
	digits = string.rep('0', 19 - #digits) .. digits
	if #digits > 19 then
		return nil
	end
	return {neg = sign == '-', hi = tonumber(string.sub(digits, 1, 10)), lo = tonumber(string.sub(digits, 11))}
end

local function below(a, b)
	return a.hi < b.hi or (a.hi == b.hi and a.lo < b.lo)
end

local function add(a, b)
	local r = {}
	if a.neg == b.neg then
		r.neg, r.hi, r.lo = a.neg, a.hi + b.hi, a.lo + b.lo
		if r.lo >= BILLION then
			r.hi, r.lo = r.hi + 1, r.lo - BILLION
		end
	else
		local big, small = a, b
		if below(a, b) then
			big, small = b, a
		end
		r.neg, r.hi, r.lo = big.neg, big.hi - small.hi, big.lo - small.lo
		if r.lo < 0 then
			r.hi, r.lo = r.hi - 1, r.lo + BILLION
		end
	end
	local limit = MAXLO + (r.neg and 1 or 0)
	if r.hi > MAXHI or (r.hi == MAXHI and r.lo > limit) then
		return nil
	end
	if r.hi == 0 and r.lo == 0 then
		return '0'
	end
	local s = r.hi > 0 and (string.format('%d', r.hi) .. string.format('%09d', r.lo)) or string.format('%d', r.lo)
	return (r.neg and '-' or '') .. s
end

-- incr: ARGV[6] the delta. The result is the new value.
function ops.incr()
	local delta = integer(ARGV[6])
	local s = get()
	local v, r, n = '0', '', '0'
	if s then
		v, r, n = split(s)
		local x = find(r)
		if x then
			return {2, x}
		end
	end
	local current = integer(v)
	if not current then
		refuse('DECODE', 'the value is not a JSON integer')
	end
	local sum = add(current, delta)
	if not sum then
		refuse('RANGE', v .. ' + ' .. ARGV[6] .. ' overflows a 64-bit integer')
	end
	local nr, nn = record(r, sum), later(n)
	store(sum, nr, nn)
	return {1, sum, r, nr, nn}
end

-- cas: ARGV[6] what the writer read: "" for nothing, "r:" and the record
-- of a value that has one, "h:" and the SHA-1 of one that has not; ARGV[7]
-- the new value text.
function ops.cas()
	local s = get()
	local v, r, n = nil, '', '0'
	local found = ''
	if s then
		v, r, n = split(s)
		local x = find(r)
		if x then
			return {2, x}
		end
		if r ~= '' then
			found = 'r:' .. r
		else
			found = 'h:' .. redis.sha1hex(s)
		end
	end
	if found ~= ARGV[6] then
		return {0, s or false}
	end
	local nr, nn = record(r, nil), later(n)
	store(ARGV[7], nr, nn)
	return {1, '', r, nr, nn}
end

-- held returns the last_modified of the string at the key, read from its
-- end, where this library and the Python library write it; nil when the key
-- is absent, "0" for a bare value.
local function held()
	local len = redis.pcall('STRLEN', key)
	if type(len) == 'table' then
		refuse('DECODE', len.err)
	end
	if len == 0 then
		return nil, 0
	end
	local tail = redis.call('GETRANGE', key, -64, -1)
	return string.match(tail, '"last_modified"%s*:%s*(%d+)%s*}%s*$') or '0', len
end

-- put: ARGV[6] the string to store, "" to delete the key; unless the key
-- holds a strictly newer last_modified. Replies 1 when it changed the key.
function ops.put()
	local value = ARGV[6]
	local n, len = held()
	if n and greater(n, stamp) then
		return 0
	end
	if value == '' then
		return redis.call('DEL', key)
	end
	if len == #value and redis.call('GET', key) == value then
		return 0
	end
	if ttl == '0' then
		redis.call('SET', key, value, 'KEEPTTL')
	else
		redis.call('SET', key, value, 'PX', ttl)
	end
	return 1
end

-- expire: gives the key the TTL ARGV[5], unless it holds a strictly newer
-- last_modified than the expiry's. Replies 1 when it did.
function ops.expire()
	local n = held()
	if not n or greater(n, stamp) then
		return 0
	end
	return redis.call('PEXPIRE', key, ttl)
end

local fn = ops[op]
local lww = op == 'put' or op == 'expire'
if not fn or not (writer or lww) then
	return redis.error_reply('ERR memory: unknown operation ' .. op .. ' ' .. id)
end
local ok, reply = pcall(fn)
if ok then
	return reply
end
if type(reply) == 'table' then
	return reply -- an error reply of the server's, such as OOM
end
return redis.error_reply(tostring(reply))
