package memory

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// putScript writes a string last-writer-wins, in one atomic step. KEYS[1]
// is the key; ARGV[1] the write's last_modified, in decimal digits; ARGV[2]
// the string to store, ” to delete the key; ARGV[3] the TTL in
// milliseconds, '0' to keep the key's own. It writes unless the key holds a
// strictly newer last_modified, read from the end of its string, where both
// this library and the Python library write it, and compared as digits: a
// nanosecond stamp exceeds a Lua number's precision. It returns 1 when it
// changed the key, 0 when it left it as it was.
var putScript = redis.NewScript(`
local key, stamp, value, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local len = redis.call('STRLEN', key)
if len > 0 then
	local tail = redis.call('GETRANGE', key, -64, -1)
	local held = string.match(tail, '"last_modified"%s*:%s*(%d+)%s*}%s*$')
	if held and (#held > #stamp or #held == #stamp and held > stamp) then
		return 0
	end
	if len == #value and redis.call('GET', key) == value then
		return 0
	end
elseif redis.call('EXISTS', key) == 0 and value == '' then
	return 0
end
if value == '' then
	redis.call('DEL', key)
elseif ttl == '0' then
	redis.call('SET', key, value, 'KEEPTTL')
else
	redis.call('SET', key, value, 'PX', ttl)
end
return 1
`)

// A put is one write of putScript.
type put struct {
	key   string
	value []byte // nil: delete the key
	stamp int64
	ttl   time.Duration // 0: keep the key's
}

// runPuts runs puts in one pipeline, and reports which changed their key.
// It loads the script if the server does not have it, and sends again the
// puts that met NOSCRIPT, which the server did not run. Every put that got
// a reply has its outcome in wrote, whatever err says of the others; a put
// the server refused is named in err.
func runPuts(ctx context.Context, client redis.UniversalClient, puts []put) (wrote []bool, err error) {
	wrote = make([]bool, len(puts))
	todo := make([]int, len(puts)) // indexes in puts
	for i := range todo {
		todo[i] = i
	}
	for loaded := false; ; loaded = true {
		pipe := client.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		for j, i := range todo {
			p := puts[i]
			cmds[j] = putScript.EvalSha(ctx, pipe, []string{p.key},
				strconv.FormatInt(p.stamp, 10), p.value, strconv.FormatInt(p.ttl.Milliseconds(), 10))
		}
		_, err = pipe.Exec(ctx)
		if isReply(err) {
			err = nil // each command's own error is looked at below
		}
		var missing []int
		for j, cmd := range cmds {
			switch n, cmdErr := cmd.Int(); {
			case cmdErr == nil:
				wrote[todo[j]] = n == 1
			case redis.HasErrorPrefix(cmdErr, "NOSCRIPT"):
				missing = append(missing, todo[j])
			case err == nil && isReply(cmdErr):
				err = fmt.Errorf("%q: %w", puts[todo[j]].key, cmdErr)
			}
		}
		if len(missing) == 0 || loaded {
			return wrote, err
		}
		if err := putScript.Load(ctx, client).Err(); err != nil {
			return wrote, err
		}
		todo = missing
	}
}
