-- The server-side operations of github.com/redis-memory/memory: one script,
-- loaded once, that applies a change to one key atomically and exactly once
-- (puts, many last-writer-wins writes, one to each of its keys).
--
-- KEYS[1] is the key. ARGV[1] names the operation; ARGV[2] is its identity,
-- "writer.seq", followed by "!" when an earlier send of it may have applied
-- (it is sent again); ARGV[3] the lowest seq of the writer's operations on the key
-- whose outcome the writer does not know yet; ARGV[4] the operation's
-- last_modified, in decimal digits of Unix nanoseconds; ARGV[5] the TTL to
-- give the key in milliseconds, "0" to keep its own, "-1" for none;
-- ARGV[6] and on, the operation's own arguments.
--
-- A value is a string holding the envelope
--
--   {"value": V, "ops": "R", "last_modified": N}
--
-- where R records the identities of recent operations, so that one sent
-- again, after its reply was lost, is recognised as applied even when other
-- writers changed the value since. An entry of R is "writer.seq.time",
-- time in Unix seconds, then "." and the result, hex-encoded, if the
-- operation has one, then "!" if it was sent again. The Python library reads such a value as
-- any other, and writes {"value": V, "last_modified": N}, which these
-- operations read too, as any layout of that object; any other JSON is a
-- bare value. V is never decoded: the operations locate and splice its JSON
-- text, so numbers keep every digit.
--
-- Replies: {1, result, previous R, new R, new N, previous N} when applied,
-- the previous N left out when the key was absent; {2, result}
-- when the identity is in R already, the result hex-encoded; {0, the
-- current string} when a compare-and-set found another value. Refusals are
-- error replies, before anything is written: DECODE (the key holds no JSON
-- value the operation can change), RANGE (an index or a number out of
-- range), EMPTY (pop of an empty list).
--
-- Some operations carry no identity. put, logput, expire and persist are
-- last-writer-wins: each reply says below what it did, put's whether the
-- key holds its value, applied or already, so that the writer knows what
-- the key holds. setnx tells its own write by its bytes. The log operations work on a
-- Redis list of envelopes rather than on one.
--
-- The script is run on every call from the top: what only some operations
-- need is made in their branch, so that the others do not pay for it.

local key, op = KEYS[1], ARGV[1]
local writer, seq, again = string.match(ARGV[2], '^(%w+)%.(%d+)(!?)$')
local id, resent = writer and writer .. '.' .. seq, again == '!'
local low, stamp, ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]

-- R keeps the identities their writers still need: those of operations
-- whose outcome the writer does not know yet, and for LINGER seconds those
-- of operations sent again, of which a copy may still be on its way, sent
-- before the one whose reply the writer had. Beyond that it keeps those of
-- the last day, and at most MAXRECORD in all, but for the operations of
-- the writer running this one whose outcome it does not know, which only
-- HARDRECORD bounds: another writer's operation sent again after more than
-- MAXRECORD others may apply twice. Ages are read from the writers' stamps.
local HORIZON, MAXRECORD, LINGER = 86400, 128, 120

-- R never holds more than HARDRECORD identities, the writer's own that it
-- may still send again included: a writer with one operation of unknown
-- outcome keeps every later one of its own, whose seqs are above the one
-- it gives as the lowest, and the bound keeps R, which every operation on
-- the key reads and rewrites, from growing with them.
local HARDRECORD = 8 * MAXRECORD

-- A result larger than MAXRESULT bytes is not kept in R: an operation that
-- returns one, and is sent again after its reply was lost, is known to have
-- applied, but its result is gone ("z").
local MAXRESULT = 2048

-- refuse ends the operation with an error reply of the given kind.
local function refuse(kind, msg)
	error(kind .. ' ' .. msg, 0)
end

-- greater compares two non-negative decimal numbers, as digits: a > b.
local function greater(a, b)
	if #a ~= #b then
		return #a > #b
	end
	return a > b
end

-- finish replies with what an operation run by pcall returned: its reply,
-- or its refusal as an error reply.
local function finish(ok, reply)
	if ok then
		return reply
	elseif type(reply) == 'table' then
		return reply -- an error reply of the server's, such as OOM
	end
	return redis.error_reply(tostring(reply))
end

-- Reading and writing the key.

local function get()
	local s = redis.pcall('GET', key)
	if type(s) == 'table' then
		refuse('DECODE', s.err or 'not a string')
	end
	return s
end

local function strlen()
	local len = redis.pcall('STRLEN', key)
	if type(len) == 'table' then
		refuse('DECODE', len.err)
	end
	return len
end

-- setKey stores s at k, giving k the TTL t, in ARGV[5]'s terms.
local function setKey(k, s, t)
	if t == '0' then
		redis.call('SET', k, s, 'KEEPTTL')
	elseif t == '-1' then
		redis.call('SET', k, s)
	else
		redis.call('SET', k, s, 'PX', t)
	end
end

local function set(s)
	setKey(key, s, ttl)
end

-- stampOf returns the last_modified that ends s, an envelope: "0" for a
-- bare value.
local function stampOf(s)
	return string.match(s, '"last_modified"%s*:%s*(%d+)%s*}%s*$') or '0'
end

-- lastModified returns the last_modified of the string at the key, read
-- from its end.
local function lastModified()
	return stampOf(redis.call('GETRANGE', key, -64, -1))
end

-- held returns the last_modified of the string at the key, and its length;
-- nil when the key is absent.
local function held()
	local len = strlen()
	if len == 0 then
		return nil, 0
	end
	return lastModified(), len
end

-- put, which every Set and Delete is, runs before the rest of the script
-- is made, which it does not need. It stores value at k, "" to delete k,
-- with the TTL t; unless k holds a strictly newer last_modified than
-- stamp, or is a log whose last element does. A key of another type is
-- replaced, as SET replaces it. Replies 1 when it changed the key, 2 when
-- the key held its value already (a delete: had none), 0 when it left a
-- newer one. It reads the key's last bytes alone, and the whole string only
-- when those are value's.
local function put(k, stamp, t, value)
	local n, tail = nil, redis.pcall('GETRANGE', k, -64, -1)
	if type(tail) ~= 'string' then -- of another type
		tail = ''
		local last = redis.pcall('LINDEX', k, -1)
		if type(last) == 'string' then
			n = stampOf(last)
		end
	elseif tail ~= '' then
		n = stampOf(tail)
	end
	if n and greater(n, stamp) then
		return 0
	elseif value == '' then
		return redis.call('DEL', k) == 1 and 1 or 2
	elseif tail ~= '' and string.sub(value, -#tail) == tail and redis.call('GET', k) == value then
		return 2
	end
	setKey(k, value, t)
	return 1
end

-- puts is the puts of concurrent callers in one call: KEYS are their keys;
-- ARGV[6] and on, three for each, its stamp, TTL and value. Replies with
-- each one's reply, in order: a number, or the message of the error it met
-- as a string, since an error reply among them would keep the client from
-- reading the others'.
if op == 'put' then
	return finish(pcall(put, key, stamp, ttl, ARGV[6]))
elseif op == 'puts' then
	local replies = {}
	for i, k in ipairs(KEYS) do
		local j = 3 * i + 3
		local ok, reply = pcall(put, k, ARGV[j], ARGV[j + 1], ARGV[j + 2])
		if not ok then
			reply = type(reply) == 'table' and reply.err or tostring(reply)
		end
		replies[i] = reply
	end
	return replies
end

-- json returns the functions that scan JSON text, made only by the
-- operations that scan. Positions are 1-based indexes into s.
local function json()
	local J = {}

	function J.space(s, i)
		return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
	end

	-- endString returns the index after the string whose opening quote
	-- is at i.
	function J.endString(s, i)
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
	function J.endValue(s, i)
		local c = string.byte(s, i)
		if c == 34 then
			return J.endString(s, i)
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
					j = J.endString(s, p)
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

	-- items returns the spans {start, end+1} of the members of the array
	-- or object text v: elements, or keys with the span of their value in
	-- [3] and [4]; the first limit of them when limit is given.
	function J.items(v, limit)
		local list, i = {}, J.space(v, 2)
		local close = string.byte(v, 1) == 91 and 93 or 125
		while string.byte(v, i) ~= close and (not limit or #list < limit) do
			local item = {i, J.endValue(v, i)}
			i = J.space(v, item[2])
			if close == 125 then
				if string.byte(v, i) ~= 58 then
					refuse('DECODE', 'expected : at byte ' .. i)
				end
				item[3] = J.space(v, i + 1)
				item[4] = J.endValue(v, item[3])
				i = J.space(v, item[4])
			end
			list[#list + 1] = item
			if string.byte(v, i) == 44 then
				i = J.space(v, i + 1)
			elseif string.byte(v, i) ~= close then
				refuse('DECODE', 'expected , at byte ' .. i)
			end
		end
		return list
	end

	-- unquote returns the text of a JSON string token.
	function J.unquote(token)
		if not string.find(token, '\\', 1, true) then
			return string.sub(token, 2, -2)
		end
		return cjson.decode(token)
	end

	-- member returns the index in list, the items of the object v, of
	-- the member named name.
	function J.member(v, list, name)
		for i, m in ipairs(list) do
			if J.unquote(string.sub(v, m[1], m[2] - 1)) == name then
				return i
			end
		end
	end

	-- openQuote returns the index of the quote that opens the string
	-- whose closing quote is at j: the first quote before it that no odd
	-- run of backslashes escapes.
	function J.openQuote(s, j)
		local i = j - 1
		while true do
			if string.byte(s, i) == 34 then
				local n = 0
				while string.byte(s, i - n - 1) == 92 do
					n = n + 1
				end
				if n % 2 == 0 then
					return i
				end
			end
			i = i - 1
		end
	end

	-- startOf returns the index of the first byte of the JSON value whose
	-- last byte is at j, scanning back: its cost is that of the value.
	function J.startOf(s, j)
		local c = string.byte(s, j)
		if c == 34 then
			return J.openQuote(s, j)
		end
		if c == 93 or c == 125 then
			local depth, i = 0, j
			while true do
				local b = string.byte(s, i)
				if b == 34 then
					i = J.openQuote(s, i)
				elseif b == 93 or b == 125 then
					depth = depth + 1
				elseif b == 91 or b == 123 then
					depth = depth - 1
					if depth == 0 then
						return i
					end
				end
				i = i - 1
			end
		end
		local i = j
		while i > 1 and not string.find(string.sub(s, i - 1, i - 1), '^[,%[{: \t\r\n]') do
			i = i - 1
		end
		return i
	end

	return J
end

-- lastNonSpace returns the index of the last byte before i that is not
-- white space, 0 for none.
local function lastNonSpace(s, i)
	i = i - 1
	while i > 0 and string.find(string.sub(s, i, i), '^[ \t\r\n]') do
		i = i - 1
	end
	return i
end

-- Envelopes, laid out as this library and the Python library write them,
-- white space aside: the value first, the stamp last, the record before
-- it. The end is matched on the reversed string, anchored: its cost is that
-- of the end alone.
local HEAD = '^%s*{%s*"value"%s*:%s*'
local REVSTAMP = '^%s*}%s*(%d+)%s*:%s*"deifidom_tsal"%s*,%s*'
local REVRECORD = '^"([%w%. !]*)"%s*:%s*"spo"%s*,%s*'

-- trailer finds the end of an envelope in this library's layout, with its
-- record right before its stamp, reading windows of growing size from the
-- end of the string: read(from) returns it from the 1-based index from. It
-- returns the index where the value ends, the record and the stamp, or
-- nothing for another layout. Only this library writes a record, and only
-- in this layout, so that what comes before it is the value: an envelope
-- without a record, as the Python library writes it, may hold other
-- members, and takes the general path.
local function trailer(len, read)
	for _, w in ipairs({512, 8192, 131072, len}) do
		local from = math.max(1, len - w + 1)
		local rev = string.reverse(read(from))
		local _, e, n = string.find(rev, REVSTAMP)
		if not e then
			return nil
		end
		local _, f, r = string.find(rev, REVRECORD, e + 1)
		if f then
			return len - f + 1, string.reverse(r), string.reverse(n)
		end
		-- A quote before the stamp may close a record that starts
		-- before the window.
		if string.byte(rev, e + 1) ~= 34 or from == 1 then
			return nil
		end
	end
end

-- split returns the value text, the record and the stamp of the stored
-- string s.
local function split(s)
	local _, head = string.find(s, HEAD)
	if head then
		local i, r, n = trailer(#s, function(from) return string.sub(s, from) end)
		if i then
			return string.sub(s, head + 1, i - 1), r, n
		end
	end
	local J = json()
	local i = J.space(s, 1)
	if string.byte(s, i) == 123 then
		local v, r, n
		for _, m in ipairs(J.items(string.sub(s, i))) do
			local name = J.unquote(string.sub(s, i + m[1] - 1, i + m[2] - 2))
			local text = string.sub(s, i + m[3] - 1, i + m[4] - 2)
			if name == 'value' then
				v = text
			elseif name == 'last_modified' then
				n = string.match(text, '^%d+$') or '0'
			elseif name == 'ops' then
				r = string.match(text, '^"([%w%. !]*)"$')
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

-- Records.

local ENTRY = '((%w+)%.(%d+)%.(%d+)%.?(%w*)(!?))'

-- find returns the result of this operation, hex-encoded, or "z" when it
-- was too large to keep, if R records the operation; and whether the entry
-- is marked sent again.
local function find(r)
	for _, w, s, _, x, mark in string.gmatch(r, ENTRY) do
		if w == writer and s == seq then
			return x, mark == '!'
		end
	end
end

-- record returns R with this operation added, and its result if any, less
-- what no writer needs any more: the writer's own operations whose outcome
-- it knows, and any beyond the horizon or the bound. The bound cuts the
-- oldest first, but never an operation of this writer's whose outcome it
-- does not know: a resend of it may come yet.
local function record(r, result)
	local now = tonumber(string.sub(stamp, 1, -10)) or 0
	local kept, open = {}, {}
	for e, w, s, t, _, mark in string.gmatch(r, ENTRY) do
		t = tonumber(t)
		local own = w == writer
		local settled = own and tonumber(s) < low and not (mark == '!' and t > now - LINGER)
		if not settled and t > now - HORIZON then
			kept[#kept + 1] = e
			open[#kept] = own and tonumber(s) >= low
		end
	end
	local entry = id .. '.' .. now
	if result and #result > MAXRESULT then
		entry = entry .. '.z'
	elseif result and result ~= '' then
		entry = entry .. '.' .. string.gsub(result, '.', function(c) return string.format('%02x', string.byte(c)) end)
	end
	kept[#kept + 1] = entry .. again
	local over = #kept - MAXRECORD
	if over <= 0 then
		return table.concat(kept, ' ')
	end
	local bounded = {}
	for i, e in ipairs(kept) do
		if over > 0 and not open[i] and i < #kept then
			over = over - 1
		else
			bounded[#bounded + 1] = e
		end
	end
	return table.concat(bounded, ' ', math.max(1, #bounded - HARDRECORD + 1), #bounded)
end

-- later returns the later of the stamp n and the operation's.
local function later(n)
	if greater(n, stamp) then
		return n
	end
	return stamp
end

-- duplicate replies to an operation R records already, with x its result.
-- Sent again, it marks the entry, rewriting the key's string of value text
-- v and stamp n, so that R keeps it for LINGER: a copy of an earlier send
-- may come yet.
local function duplicate(x, marked, v, r, n)
	if resent and not marked then
		r = string.gsub(r, '(%w+)%.(%d+)(%.[%w%.]*)', function(w, s, rest)
			if w == writer and s == seq then
				return w .. '.' .. s .. rest .. '!'
			end
		end)
		redis.call('SET', key, envelope(v, r, n), 'KEEPTTL')
	end
	return {2, x}
end

-- change applies fn to the value of the key, a JSON text of the kind want
-- ('[' or '{'; empty when absent or null), writes what fn returns, and
-- replies. fn returns the new value text, or nil to write nothing, and the
-- operation's result.
local function change(want, empty, fn)
	local s = get()
	local v, r, n = empty, '', '0'
	if s then
		v, r, n = split(s)
		local x, marked = find(r)
		if x then
			return duplicate(x, marked, v, r, n)
		end
		v = string.match(v, '^%s*(.-)%s*$')
		local first = string.sub(v, 1, 1)
		if first == 'n' then
			v = empty
		elseif first ~= want then
			refuse('DECODE', 'the value is not a JSON ' .. (want == '[' and 'array' or 'object'))
		end
	end
	local next, result = fn(v)
	if not next and not s then
		return {1, result or '', r, r, n}
	end
	-- A change that changes nothing of an existing value still records
	-- its identity, so that sent again it does not apply after all.
	next = next or v
	local nr, nn = record(r, result), later(n)
	set(envelope(next, nr, nn))
	return {1, result or '', r, nr, nn, s and n}
end

local function outOfRange(i, length)
	refuse('RANGE', 'index ' .. i .. ' out of range with length ' .. length)
end

-- The operations.

local function run()
	if op == 'append' then
		-- ARGV[6]: the new elements, JSON texts joined by ','. Written in
		-- place at the end of the string, so that its cost does not grow
		-- with the list.
		local elements = ARGV[6]
		local len = strlen()
		if len > 0 and string.find(redis.call('GETRANGE', key, 0, 63), HEAD .. '%[') then
			local tail = ''
			local i, r, n = trailer(len, function(from)
				tail = redis.call('GETRANGE', key, from - 1, -1)
				return tail
			end)
			-- The ']' that closes the list ends the value; whether the
			-- list is empty shows before it, in the last window read.
			local offset = i and len - #tail
			local close = i and lastNonSpace(tail, i - offset)
			local before = close and close > 1 and lastNonSpace(tail, close)
			local x, marked = find(r or '')
			if x and (marked or not resent) then
				return {2, x}
			end
			-- A duplicate to mark takes the general path.
			if not x and before and before > 0 and string.byte(tail, close) == 93 then
				local nr, nn = record(r, nil), later(n)
				local sep = string.byte(tail, before) == 91 and '' or ','
				local rest = sep .. elements .. '], "ops": "' .. nr .. '", "last_modified": ' .. nn .. '}'
				if #rest >= #tail - close + 1 then
					redis.call('SETRANGE', key, offset + close - 1, rest)
					if ttl ~= '0' then
						redis.call('PEXPIRE', key, ttl)
					end
					return {1, '', r, nr, nn, n}
				end
			end
		end
		return change('[', '[]', function(v)
			local last = lastNonSpace(v, lastNonSpace(v, #v + 1))
			local sep = string.byte(v, last) == 91 and '' or ','
			return string.sub(v, 1, last) .. sep .. elements .. ']'
		end)
	elseif op == 'insert' or op == 'set' or op == 'remove' then
		-- ARGV[6]: the index; ARGV[7], for insert and set, the element.
		-- remove's result is the element removed.
		local J = json()
		return change('[', '[]', function(v)
			local i = tonumber(ARGV[6])
			local list = J.items(v, i + 2)
			if i < 0 or i > #list or i == #list and op ~= 'insert' then
				outOfRange(i, #list)
			end
			if op == 'insert' then
				if i < #list then
					return string.sub(v, 1, list[i + 1][1] - 1) .. ARGV[7] .. ',' .. string.sub(v, list[i + 1][1])
				elseif i == 0 then
					return '[' .. ARGV[7] .. ']'
				end
				return string.sub(v, 1, list[i][2] - 1) .. ',' .. ARGV[7] .. ']'
			end
			local this = list[i + 1]
			if op == 'set' then
				return string.sub(v, 1, this[1] - 1) .. ARGV[7] .. string.sub(v, this[2])
			end
			local element = string.sub(v, this[1], this[2] - 1)
			if list[i + 2] then
				return string.sub(v, 1, this[1] - 1) .. string.sub(v, list[i + 2][1]), element
			elseif i == 0 then
				return '[]', element
			end
			return string.sub(v, 1, list[i][2] - 1) .. ']', element
		end)
	elseif op == 'pop' then
		-- The result is the last element, found scanning back from the
		-- end.
		local J = json()
		return change('[', '[]', function(v)
			local last = lastNonSpace(v, lastNonSpace(v, #v + 1))
			if string.byte(v, last) == 91 then
				refuse('EMPTY', 'the list is empty')
			end
			local first = J.startOf(v, last)
			local element = string.sub(v, first, last)
			local before = lastNonSpace(v, first)
			if string.byte(v, before) == 91 then
				return '[]', element
			end
			return string.sub(v, 1, before - 1) .. ']', element
		end)
	elseif op == 'mapset' then
		-- ARGV[6] and on: triples of a key, the key as a JSON string and
		-- the value's JSON text, set in order.
		local J = json()
		return change('{', '{}', function(v)
			for a = 6, #ARGV, 3 do
				local list = J.items(v)
				local i = J.member(v, list, ARGV[a])
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
	elseif op == 'mapdel' then
		-- ARGV[6]: the key to delete. An absent key writes nothing.
		local J = json()
		return change('{', '{}', function(v)
			local list = J.items(v)
			local i = J.member(v, list, ARGV[6])
			if not i then
				return nil
			elseif #list == 1 then
				return '{}'
			elseif i == #list then
				return string.sub(v, 1, list[i - 1][4] - 1) .. '}'
			end
			return string.sub(v, 1, list[i][1] - 1) .. string.sub(v, list[i + 1][1])
		end)
	elseif op == 'incr' then
		-- ARGV[6]: the delta. The result is the new value. Integers are
		-- a sign and a magnitude in two parts, hi * 1e9 + lo, each exact
		-- in a Lua number.
		local function integer(text)
			local sign, digits = string.match(text, '^%s*(%-?)(%d+)%s*$')
			if not digits or #digits > 19 or #digits > 1 and string.sub(digits, 1, 1) == '0' then
				return nil
			end
			digits = string.rep('0', 19 - #digits) .. digits
			return {neg = sign == '-', hi = tonumber(string.sub(digits, 1, 10)), lo = tonumber(string.sub(digits, 11))}
		end
		local s = get()
		local v, r, n = '0', '', '0'
		if s then
			v, r, n = split(s)
			local x, marked = find(r)
			if x then
				return duplicate(x, marked, v, r, n)
			end
		end
		local a, b = integer(v), integer(ARGV[6])
		if not a then
			refuse('DECODE', 'the value is not a JSON integer')
		end
		-- Add magnitudes of one sign; else take the smaller from the
		-- larger. (No swapping assignments: gopher-lua gets them wrong.)
		local big, small = a, b
		if b.hi > a.hi or b.hi == a.hi and b.lo > a.lo then
			big, small = b, a
		end
		local hi, lo = big.hi + small.hi, big.lo + small.lo
		if a.neg ~= b.neg then
			hi, lo = big.hi - small.hi, big.lo - small.lo
		end
		if lo >= 1000000000 then
			hi, lo = hi + 1, lo - 1000000000
		elseif lo < 0 then
			hi, lo = hi - 1, lo + 1000000000
		end
		local neg = big.neg and (hi > 0 or lo > 0)
		if hi > 9223372036 or hi == 9223372036 and lo > 854775807 + (neg and 1 or 0) then
			refuse('RANGE', v .. ' + ' .. ARGV[6] .. ' overflows a 64-bit integer')
		end
		local sum = hi > 0 and string.format('%d%09d', hi, lo) or string.format('%d', lo)
		if neg then
			sum = '-' .. sum
		end
		local nr, nn = record(r, sum), later(n)
		set(envelope(sum, nr, nn))
		return {1, sum, r, nr, nn}
	elseif op == 'cas' then
		-- ARGV[6]: what the writer read: "" for nothing, "r:" and the
		-- record of a value that has one, "h:" and the SHA-1 of one that
		-- has not; ARGV[7]: the new value text.
		local s = get()
		-- A copy of an earlier send finds another record, and no
		-- longer applies: cas needs no mark.
		local r, n, found = '', '0', ''
		if s then
			local _
			_, r, n = split(s)
			if find(r) then
				return {2, ''}
			end
			found = r ~= '' and 'r:' .. r or 'h:' .. redis.sha1hex(s)
		end
		if found ~= ARGV[6] then
			return {0, s or false}
		end
		local nr, nn = record(r, nil), later(n)
		set(envelope(ARGV[7], nr, nn))
		return {1, '', r, nr, nn}
	elseif op == 'logappend' then
		-- A log is a Redis list of envelopes, one per item. ARGV[6] and
		-- on: the items' JSON texts. The elements carry the operation's
		-- identity, so that no other writer's element is the same, and
		-- the log is searched for the last one from its end: all of it
		-- when sent again, else the last MAXRECORD elements, for a copy of
		-- an earlier send that comes after the one sent again. The result
		-- is the length.
		local function element(v)
			return '{"value": ' .. v .. ', "ops": "' .. id .. '", "last_modified": ' .. stamp .. '}'
		end
		local at = redis.pcall('LPOS', key, element(ARGV[#ARGV]), 'RANK', -1, 'MAXLEN', resent and 0 or MAXRECORD)
		if type(at) == 'table' then
			refuse('DECODE', at.err)
		elseif at then
			return {2, ''}
		end
		local n = 0
		for from = 6, #ARGV, 1000 do
			local elements = {}
			for i = from, math.min(from + 999, #ARGV) do
				elements[#elements + 1] = element(ARGV[i])
			end
			n = redis.pcall('RPUSH', key, unpack(elements))
			if type(n) == 'table' then
				refuse('DECODE', n.err)
			end
		end
		if ttl ~= '0' and ttl ~= '-1' then
			redis.call('PEXPIRE', key, ttl)
		end
		return {1, tostring(n), '', '', stamp}
	elseif op == 'logtrim' then
		-- ARGV[6]: how many of the newest elements to keep.
		local keep = tonumber(ARGV[6])
		local done = keep > 0 and redis.pcall('LTRIM', key, -keep, -1) or redis.pcall('DEL', key)
		if type(done) == 'table' and done.err then
			refuse('DECODE', done.err)
		end
		return {1, '', '', '', stamp}
	elseif op == 'logput' then
		-- ARGV[6] and on: the elements of a log, as stored, to replace
		-- whatever the key holds, unless it holds something newer than
		-- the call: a log whose last element is, or a value that is.
		local kind = redis.call('TYPE', key).ok
		local n
		if kind == 'list' then
			n = stampOf(redis.call('LINDEX', key, -1) or '')
		elseif kind == 'string' then
			n = held()
		end
		if n and greater(n, stamp) then
			return 0
		end
		redis.call('DEL', key)
		for from = 6, #ARGV, 1000 do
			redis.call('RPUSH', key, unpack(ARGV, from, math.min(from + 999, #ARGV)))
		end
		if ttl ~= '0' and ttl ~= '-1' then
			redis.call('PEXPIRE', key, ttl)
		end
		return 1
	elseif op == 'setnx' then
		-- ARGV[6]: the string to store, if the key has none. Replies 1
		-- when it stored it, 2 when the key holds that very string
		-- already (a send before stored it), 0 when it holds another.
		local s = get()
		if not s then
			set(ARGV[6])
			return 1
		end
		return s == ARGV[6] and 2 or 0
	elseif op == 'persist' then
		-- Removes the key's TTL, unless the key holds a strictly newer
		-- last_modified than the call. Replies 1 when it did, 2 when it
		-- left a newer value alone, 0 when the key is absent.
		local n = held()
		if not n then
			return 0
		elseif greater(n, stamp) then
			return 2
		end
		redis.call('PERSIST', key)
		return 1
	elseif op == 'expire' then
		-- ARGV[6]: the TTL in milliseconds, as PEXPIRE takes it; unless the
		-- key holds a strictly newer last_modified than the expiry's.
		local n = held()
		if not n or greater(n, stamp) then
			return 0
		end
		return redis.call('PEXPIRE', key, ARGV[6])
	end
	return redis.error_reply('ERR memory: unknown operation ' .. op)
end

if not writer and op ~= 'logput' and op ~= 'expire' and op ~= 'persist' and op ~= 'setnx' then
	return redis.error_reply('ERR memory: operation ' .. op .. ' without an identity: ' .. ARGV[2])
end
return finish(pcall(run))
