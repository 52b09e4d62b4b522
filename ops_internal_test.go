package memory

import (
	"cmp"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

// scriptServers runs fn on a fresh miniredis and a fresh redis-server, with
// a conn on each.
func scriptServers(t *testing.T, fn func(t *testing.T, c *conn, raw *redis.Client)) {
	t.Helper()
	for name, addr := range map[string]func() string{
		"miniredis":    func() string { return miniredis.RunT(t).Addr() },
		"redis-server": func() string { return redisserver.Start(t).Addr },
	} {
		t.Run(name, func(t *testing.T) {
			raw := redis.NewClient(&redis.Options{Addr: addr()})
			t.Cleanup(func() { raw.Close() })
			fn(t, &conn{client: raw, clock: clockFor(2 * time.Second)}, raw)
		})
	}
}

// recordTimes are the server times in records, which tests do not control.
var recordTimes = regexp.MustCompile(`(\w+\.\d+)\.\d+`)

func TestOpsScript(t *testing.T) {
	// long returns an envelope longer than the end of it that put reads
	// first, which begins with head.
	long := func(head string) string {
		return `{"value": "` + head + strings.Repeat("x", 100) + `", "last_modified": 5}`
	}
	const (
		ours   = `{"value": [1,"a"], "ops": "other.7.NOW", "last_modified": 5}`
		python = `{"value": [1, "a"], "last_modified": 5}`
	)
	tests := []struct {
		name    string
		stored  string // "" for no key
		op      op
		want    string // the stored string after, record times as T; "=" for unchanged
		outcome int
		result  string
		err     string
	}{
		{name: "append to nothing", op: op{name: "append", args: []any{`1,2`}},
			want: `{"value": [1,2], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append in place", stored: ours, op: op{name: "append", args: []any{`{"b":"]\"x"}`}},
			want: `{"value": [1,"a",{"b":"]\"x"}], "ops": "other.7.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to Python's", stored: python, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [1, "a",3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to an empty list", stored: `{"value": [ ], "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to a bare list", stored: `[1,  2]`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [1,  2,3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to null", stored: `{"value": null, "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to another layout", stored: `{"last_modified": 5, "value": ["x"]}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": ["x",3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append keeps a newer stamp", stored: `{"value": [], "last_modified": 1000}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [3], "ops": "w1.3.T", "last_modified": 1000}`, outcome: applied},
		{name: "append twice", stored: `{"value": [1], "ops": "x.1.NOW w1.3.NOW", "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: "=", outcome: duplicate},
		{name: "append to an object", stored: `{"value": {"a": 1}, "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: "=", err: "not a JSON array"},
		{name: "append to no JSON", stored: `{"value": [1`, op: op{name: "append", args: []any{`3`}},
			want: "=", err: "DecodeError"},

		{name: "insert first", stored: ours, op: op{name: "insert", args: []any{0, `0`}},
			want: `{"value": [0,1,"a"], "ops": "other.7.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "insert last", stored: ours, op: op{name: "insert", args: []any{2, `"z"`}},
			want: `{"value": [1,"a","z"], "ops": "other.7.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "insert out of range", stored: ours, op: op{name: "insert", args: []any{3, `0`}},
			want: "=", err: "index 3 out of range with length 2"},
		{name: "set", stored: `{"value": [1, {"x": "[\"{"}, 3], "last_modified": 5}`, op: op{name: "set", args: []any{1, `2`}},
			want: `{"value": [1, 2, 3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "remove", stored: `{"value": [1, {"x": "[\"{"}, 3], "last_modified": 5}`, op: op{name: "remove", args: []any{1}},
			want: `{"value": [1, 3], "ops": "w1.3.T.7b2278223a20225b5c227b227d", "last_modified": 100}`, outcome: applied, result: `{"x": "[\"{"}`},
		{name: "pop", stored: ours, op: op{name: "pop"},
			want: `{"value": [1], "ops": "other.7.T w1.3.T.226122", "last_modified": 100}`, outcome: applied, result: `"a"`},
		{name: "pop the last one", stored: `{"value": [7], "last_modified": 5}`, op: op{name: "pop"},
			want: `{"value": [], "ops": "w1.3.T.37", "last_modified": 100}`, outcome: applied, result: `7`},
		{name: "pop empty", stored: `{"value": [], "last_modified": 5}`, op: op{name: "pop"},
			want: "=", err: "the list is empty"},
		{name: "pop twice", stored: `{"value": [], "ops": "w1.3.NOW.226122", "last_modified": 5}`, op: op{name: "pop"},
			want: "=", outcome: duplicate, result: `"a"`},

		{name: "append to compact JSON", stored: `{"value":[1,2],"last_modified":5}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [1,2,3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to an empty compact list", stored: `{ "value" : [ ] , "last_modified" : 5 }`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append in place after a space", stored: `{"value": [1] , "ops": "x.1.NOW", "last_modified": 5}`, op: op{name: "append", args: []any{`2`}},
			want: `{"value": [1,2], "ops": "x.1.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "append to an envelope with another member", stored: `{"value": [1], "x": [2], "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: `{"value": [1,3], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "pop an envelope with another member", stored: `{"value": [1], "x": [2], "last_modified": 5}`, op: op{name: "pop"},
			want: `{"value": [], "ops": "w1.3.T.31", "last_modified": 100}`, outcome: applied, result: `1`},
		{name: "cas by record of another layout", stored: `{"value": 1, "ops": "o.1.NOW", "foo": 1, "last_modified": 5}`, op: op{name: "cas", args: []any{"r:o.1.NOW", `2`}},
			want: `{"value": 2, "ops": "o.1.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "insert into a bare list with white space", stored: ` [1, 2] `, op: op{name: "insert", args: []any{0, `0`}},
			want: `{"value": [0,1, 2], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "pop an object", stored: `{"value": [1, {"a": "x\"]\\", "b": [1, {"c": "}"}]}], "last_modified": 5}`, op: op{name: "pop"},
			want:    `{"value": [1], "ops": "w1.3.T.7b2261223a2022785c225d5c5c222c202262223a205b312c207b2263223a20227d227d5d7d", "last_modified": 100}`,
			outcome: applied, result: `{"a": "x\"]\\", "b": [1, {"c": "}"}]}`},
		{name: "pop a string with an escaped quote", stored: `{"value": ["a", "b\"c"], "last_modified": 5}`, op: op{name: "pop"},
			want: `{"value": ["a"], "ops": "w1.3.T.22625c226322", "last_modified": 100}`, outcome: applied, result: `"b\"c"`},
		{name: "pop a string that ends with a backslash", stored: `{"value": ["a", "b\\"], "last_modified": 5}`, op: op{name: "pop"},
			want: `{"value": ["a"], "ops": "w1.3.T.22625c5c22", "last_modified": 100}`, outcome: applied, result: `"b\\"`},
		{name: "pop a number", stored: `{"value": [1, -2.5e3 ], "last_modified": 5}`, op: op{name: "pop"},
			want: `{"value": [1], "ops": "w1.3.T.2d322e356533", "last_modified": 100}`, outcome: applied, result: `-2.5e3`},
		{name: "remove the first", stored: `{"value": [1, 2, 3], "last_modified": 5}`, op: op{name: "remove", args: []any{0}},
			want: `{"value": [2, 3], "ops": "w1.3.T.31", "last_modified": 100}`, outcome: applied, result: `1`},
		{name: "remove the last", stored: `{"value": [1, 2, 3], "last_modified": 5}`, op: op{name: "remove", args: []any{2}},
			want: `{"value": [1, 2], "ops": "w1.3.T.33", "last_modified": 100}`, outcome: applied, result: `3`},
		{name: "remove out of range", stored: `{"value": [1, 2, 3], "last_modified": 5}`, op: op{name: "remove", args: []any{3}},
			want: "=", err: "index 3 out of range with length 3"},
		{name: "insert into nothing", op: op{name: "insert", args: []any{0, `"x"`}},
			want: `{"value": ["x"], "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "set out of range", stored: `{"value": [], "last_modified": 5}`, op: op{name: "set", args: []any{0, `1`}},
			want: "=", err: "index 0 out of range with length 0"},

		{name: "map set new", stored: `{"value": {"a": 1}, "last_modified": 5}`, op: op{name: "mapset", args: []any{"b", `"b"`, `[2]`}},
			want: `{"value": {"a": 1,"b":[2]}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map set existing", stored: `{"value": {"a": 1, "b": {"c": "}"}}, "last_modified": 5}`, op: op{name: "mapset", args: []any{"b", `"b"`, `2`}},
			want: `{"value": {"a": 1, "b": 2}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map set Python's escaped key", stored: `{"value": {"caf\u00e9": 1}, "last_modified": 5}`, op: op{name: "mapset", args: []any{"café", `"café"`, `2`}},
			want: `{"value": {"caf\u00e9": 2}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map update", stored: "", op: op{name: "mapset", args: []any{"a", `"a"`, `1`, "b", `"b"`, `2`, "a", `"a"`, `3`}},
			want: `{"value": {"a":3,"b":2}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map delete", stored: `{"value": {"a": 1, "b": 2, "c": 3}, "last_modified": 5}`, op: op{name: "mapdel", args: []any{"b"}},
			want: `{"value": {"a": 1, "c": 3}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map delete last", stored: `{"value": {"a": 1, "b": 2}, "last_modified": 5}`, op: op{name: "mapdel", args: []any{"b"}},
			want: `{"value": {"a": 1}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map delete absent", stored: `{"value": {"a": 1}, "last_modified": 5}`, op: op{name: "mapdel", args: []any{"b"}},
			want: `{"value": {"a": 1}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "map delete of no map", op: op{name: "mapdel", args: []any{"b"}},
			want: "", outcome: applied},
		{name: "map set on a list", stored: ours, op: op{name: "mapset", args: []any{"b", `"b"`, `2`}},
			want: "=", err: "not a JSON object"},

		{name: "incr nothing", op: op{name: "incr", args: []any{"-5"}},
			want: `{"value": -5, "ops": "w1.3.T.2d35", "last_modified": 100}`, outcome: applied, result: "-5"},
		{name: "incr past a double", stored: `{"value": 9007199254740993, "last_modified": 5}`, op: op{name: "incr", args: []any{"2"}},
			want: `{"value": 9007199254740995, "ops": "w1.3.T.39303037313939323534373430393935", "last_modified": 100}`, outcome: applied, result: "9007199254740995"},
		{name: "incr across zero", stored: `{"value": 3, "last_modified": 5}`, op: op{name: "incr", args: []any{"-1000000000003"}},
			want: `{"value": -1000000000000, "ops": "w1.3.T.2d31303030303030303030303030", "last_modified": 100}`, outcome: applied, result: "-1000000000000"},
		{name: "incr a bare number", stored: `41`, op: op{name: "incr", args: []any{"1"}},
			want: `{"value": 42, "ops": "w1.3.T.3432", "last_modified": 100}`, outcome: applied, result: "42"},
		{name: "incr to the limit", stored: `{"value": 9223372036854775806, "last_modified": 5}`, op: op{name: "incr", args: []any{"1"}},
			want: `{"value": 9223372036854775807, "ops": "w1.3.T.39323233333732303336383534373735383037", "last_modified": 100}`, outcome: applied, result: "9223372036854775807"},
		{name: "incr overflow", stored: `{"value": 9223372036854775807, "last_modified": 5}`, op: op{name: "incr", args: []any{"1"}},
			want: "=", err: "overflows"},
		{name: "incr a float", stored: `{"value": 1.5, "last_modified": 5}`, op: op{name: "incr", args: []any{"1"}},
			want: "=", err: "not a JSON integer"},
		{name: "incr a string", stored: `{"value": "1", "last_modified": 5}`, op: op{name: "incr", args: []any{"1"}},
			want: "=", err: "not a JSON integer"},
		{name: "incr twice", stored: `{"value": 50, "ops": "w1.3.NOW.3432", "last_modified": 5}`, op: op{name: "incr", args: []any{"1"}},
			want: "=", outcome: duplicate, result: "42"},

		{name: "cas on nothing", op: op{name: "cas", args: []any{"", `{"a":1}`}},
			want: `{"value": {"a":1}, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "cas by record", stored: ours, op: op{name: "cas", args: []any{"r:other.7.NOW", `2`}},
			want: `{"value": 2, "ops": "other.7.T w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "cas by hash", stored: python, op: op{name: "cas", args: []any{"h:" + sha1hex(python), `2`}},
			want: `{"value": 2, "ops": "w1.3.T", "last_modified": 100}`, outcome: applied},
		{name: "cas conflict", stored: python, op: op{name: "cas", args: []any{"h:0000", `2`}},
			want: "=", outcome: conflicted},
		{name: "cas twice", stored: `{"value": 2, "ops": "w1.3.NOW", "last_modified": 5}`, op: op{name: "cas", args: []any{"", `3`}},
			want: "=", outcome: duplicate},

		{name: "record keeps what writers need", stored: `{"value": [], "ops": "w1.1.NOW w1.2.NOW w2.1.NOW w1.5.NOW", "last_modified": 5}`,
			op:   op{name: "append", low: 2, args: []any{`1`}},
			want: `{"value": [1], "ops": "w1.2.T w2.1.T w1.5.T w1.3.T", "last_modified": 100}`, outcome: applied},

		{name: "resent append applied before", stored: `{"value": [1], "ops": "x.1.NOW w1.3.NOW", "last_modified": 5}`, op: op{name: "append", resent: true, args: []any{`3`}},
			want: `{"value": [1], "ops": "x.1.T w1.3.T!", "last_modified": 5}`, outcome: duplicate},
		{name: "resent append marked before", stored: `{"value": [1], "ops": "w1.3.NOW!", "last_modified": 5}`, op: op{name: "append", resent: true, args: []any{`3`}},
			want: "=", outcome: duplicate},
		{name: "append marked before", stored: `{"value": [1], "ops": "w1.3.NOW!", "last_modified": 5}`, op: op{name: "append", args: []any{`3`}},
			want: "=", outcome: duplicate},
		{name: "resent append", stored: ours, op: op{name: "append", resent: true, args: []any{`3`}},
			want: `{"value": [1,"a",3], "ops": "other.7.T w1.3.T!", "last_modified": 100}`, outcome: applied},
		{name: "resent map set applied before", stored: `{"value": {"a": 1}, "ops": "w1.3.NOW", "last_modified": 5}`, op: op{name: "mapset", resent: true, args: []any{"a", `"a"`, `2`}},
			want: `{"value": {"a": 1}, "ops": "w1.3.T!", "last_modified": 5}`, outcome: duplicate},
		{name: "resent incr applied before", stored: `{"value": 50, "ops": "w1.3.NOW.3432", "last_modified": 5}`, op: op{name: "incr", resent: true, args: []any{"1"}},
			want: `{"value": 50, "ops": "w1.3.T.3432!", "last_modified": 5}`, outcome: duplicate, result: "42"},
		{name: "resent cas applied before", stored: `{"value": 2, "ops": "w1.3.NOW", "last_modified": 5}`, op: op{name: "cas", resent: true, args: []any{"", `3`}},
			want: "=", outcome: duplicate},
		{name: "record keeps a resent entry a while", stored: `{"value": [], "ops": "w1.1.1000! w1.2.1000 w1.0.1002! w2.1.1000", "last_modified": 5}`,
			op:   op{name: "append", low: 3, stamp: 1121e9, args: []any{`1`}},
			want: `{"value": [1], "ops": "w1.0.T! w2.1.T w1.3.T", "last_modified": 1121000000000}`, outcome: applied},

		{name: "put", stored: python, op: op{name: "put", stamp: 5, args: []any{`{"value": 9, "last_modified": 5}`}},
			want: `{"value": 9, "last_modified": 5}`, outcome: applied},
		{name: "put older", stored: python, op: op{name: "put", stamp: 4, args: []any{`{"value": 9, "last_modified": 4}`}},
			want: "=", outcome: conflicted},
		{name: "put unchanged", stored: python, op: op{name: "put", stamp: 5, args: []any{python}},
			want: "=", outcome: duplicate},
		{name: "put of another value as long", stored: python, op: op{name: "put", stamp: 5, args: []any{`{"value": [1, "b"], "last_modified": 5}`}},
			want: `{"value": [1, "b"], "last_modified": 5}`, outcome: applied},
		{name: "put of another value with the same end", stored: long("a"), op: op{name: "put", stamp: 5, args: []any{long("b")}},
			want: long("b"), outcome: applied},
		{name: "put unchanged, long", stored: long("a"), op: op{name: "put", stamp: 5, args: []any{long("a")}},
			want: "=", outcome: duplicate},
		{name: "put delete", stored: python, op: op{name: "put", stamp: 5, args: []any{""}},
			want: "", outcome: applied},
		{name: "put delete of an absent key", op: op{name: "put", stamp: 5, args: []any{""}},
			want: "", outcome: duplicate},
		{name: "put over a bare value", stored: `7`, op: op{name: "put", stamp: 1, args: []any{`8`}},
			want: `8`, outcome: applied},
		{name: "expire older", stored: python, op: op{name: "expire", stamp: 4, args: []any{3600000}},
			want: "=", outcome: conflicted},
		{name: "expire", stored: python, op: op{name: "expire", stamp: 5, args: []any{-1}},
			want: "", outcome: applied},
	}
	scriptServers(t, func(t *testing.T, c *conn, raw *redis.Client) {
		ctx := context.Background()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := "k:" + strings.ReplaceAll(tt.name, " ", "_")
				now := strconv.FormatInt(time.Now().Unix(), 10)
				stored := strings.ReplaceAll(tt.stored, "NOW", now)
				if stored != "" {
					require.NoError(t, raw.Set(ctx, key, stored, 0).Err())
				}
				o := tt.op
				o.args = slices.Clone(o.args)
				for i, a := range o.args {
					if s, ok := a.(string); ok {
						o.args[i] = strings.ReplaceAll(s, "NOW", now)
					}
				}
				if o.name != "put" && o.name != "expire" {
					o.id, o.stamp = opID{"w1", 3}, cmp.Or(o.stamp, 100)
				}
				reply, err := o.run(ctx, c, key)
				after, getErr := raw.Get(ctx, key).Result()
				if getErr == redis.Nil {
					after = ""
				}
				want := tt.want
				if want == "=" {
					want = stored
				}
				require.Equal(t, recordTimes.ReplaceAllString(want, "$1.T"), recordTimes.ReplaceAllString(after, "$1.T"))
				if tt.err != "" {
					require.Error(t, err)
					if tt.err == "DecodeError" {
						require.ErrorAs(t, err, new(*DecodeError))
					} else {
						require.Contains(t, err.Error(), tt.err)
					}
					return
				}
				require.NoError(t, err)
				require.Equal(t, tt.outcome, reply.outcome)
				require.Equal(t, tt.result, string(reply.result))
			})
		}

		t.Run("wrong type", func(t *testing.T) {
			require.NoError(t, raw.RPush(ctx, "k:list", "x").Err())
			for _, name := range []string{"append", "incr", "cas", "pop"} {
				_, err := (&op{name: name, id: opID{"w1", 1}, args: []any{"1", "2"}}).run(ctx, c, "k:list")
				require.ErrorAs(t, err, new(*DecodeError), name)
			}
			reply, err := (&op{name: "put", stamp: 1, ttl: -1, args: []any{"1"}}).run(ctx, c, "k:list")
			require.NoError(t, err)
			require.Equal(t, applied, reply.outcome, "put replaces a key of another type, as SET does")
			require.Equal(t, "1", raw.Get(ctx, "k:list").Val())
		})
		t.Run("log copies", func(t *testing.T) {
			// A copy of a first send that comes after the resend applied
			// finds its element among the last ones, and so does a resend.
			first := op{name: "logappend", id: opID{"w1", 3}, stamp: 100, args: []any{`"a"`, `"b"`}}
			resend := first
			resend.resent = true
			for i, send := range []struct {
				op      op
				outcome int
			}{{resend, applied}, {first, duplicate}, {resend, duplicate}} {
				reply, err := send.op.run(ctx, c, "k:log")
				require.NoError(t, err)
				require.Equal(t, send.outcome, reply.outcome, "send %d", i)
			}
			require.Equal(t, []string{
				`{"value": "a", "ops": "w1.3", "last_modified": 100}`,
				`{"value": "b", "ops": "w1.3", "last_modified": 100}`,
			}, raw.LRange(ctx, "k:log", 0, -1).Val())
		})
		t.Run("ttl", func(t *testing.T) {
			require.NoError(t, raw.Set(ctx, "k:ttl", `{"value": [], "last_modified": 5}`, time.Hour).Err())
			_, err := (&op{name: "append", id: opID{"w1", 1}, args: []any{"1"}}).run(ctx, c, "k:ttl")
			require.NoError(t, err)
			require.Greater(t, raw.PTTL(ctx, "k:ttl").Val(), 59*time.Minute, "kept")
			_, err = (&op{name: "incr", id: opID{"w1", 2}, ttl: time.Minute, args: []any{"1"}}).run(ctx, c, "k:n")
			require.NoError(t, err)
			require.InDelta(t, time.Minute, raw.PTTL(ctx, "k:n").Val(), float64(5*time.Second), "given")
		})
	})
}

func sha1hex(s string) string { return newScript(s).sha }

// TestPutHeld delivers puts as the queue does: each reports held when the
// server holds its value afterwards, whether this send or an earlier one
// wrote it, and not when a newer value won.
func TestPutHeld(t *testing.T) {
	scriptServers(t, func(t *testing.T, c *conn, raw *redis.Client) {
		ctx := context.Background()
		value := []byte(`{"value": 1, "last_modified": 5}`)
		for _, tt := range []struct {
			name string
			p    *put
			held bool
		}{
			{"written", &put{value: value, stamp: 5, ttl: -1}, true},
			{"written before", &put{value: value, stamp: 5, ttl: -1}, true},
			{"older", &put{value: []byte(`{"value": 0, "last_modified": 4}`), stamp: 4, ttl: -1}, false},
			{"with an expiry", &put{value: []byte(`{"value": 2, "last_modified": 6}`), stamp: 6, ttl: -1, expiry: &expiry{deadline: time.Now().Add(time.Hour), stamp: 6}}, true},
			{"with an expiry that loses", &put{value: []byte(`{"value": 2, "last_modified": 6}`), stamp: 6, ttl: -1, expiry: &expiry{deadline: time.Now().Add(time.Hour), stamp: 5}}, false},
			{"deleted", &put{stamp: 7}, true},
			{"deleted before", &put{stamp: 7}, true},
		} {
			held, err := tt.p.deliver(ctx, c, "k:held", false)
			require.NoError(t, err, tt.name)
			require.Equal(t, tt.held, held, tt.name)
		}
		require.Zero(t, raw.Exists(ctx, "k:held").Val())
	})
}
