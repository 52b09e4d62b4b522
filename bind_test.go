package memory_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

type profile struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

// level encodes itself as text.
type level int

func (l level) MarshalText() ([]byte, error) { return []byte(strings.Repeat("*", int(l))), nil }

func (l *level) UnmarshalText(b []byte) error {
	*l = level(len(b))
	return nil
}

type Base struct {
	ID      string `memory:"id"`
	Created time.Time
}

type Audit struct {
	Editor string `memory:"editor"`
}

type session struct {
	Base                       // promoted: id, Created
	*Audit                     // promoted through a pointer: editor
	User     profile           `memory:"user"`
	History  []string          `memory:"history"`
	Scores   map[string]int    `memory:"scores"`
	Limit    *int              `memory:"limit"`
	Raw      json.RawMessage   `memory:"raw"`
	Level    level             `memory:"level"`
	Note     string            `memory:"note,omitempty"`
	Tags     []string          `memory:"tags,omitempty"`
	Secret   string            `memory:"-"`
	Any      any               `memory:"any"`
	Topic    string            // untagged: bound as "Topic"
	internal int               //nolint:unused // unexported: ignored
	Extra    map[string]string `memory:"extra,omitempty"`
}

func fullSession() session {
	limit := 10
	return session{
		Base:    Base{ID: "s-1", Created: time.Date(2026, 11, 28, 9, 30, 0, 123, time.UTC)},
		Audit:   &Audit{Editor: "ada"},
		User:    profile{Name: "Ada", Age: 36},
		History: []string{"hi", "hello"},
		Scores:  map[string]int{"a": 1},
		Limit:   &limit,
		Raw:     json.RawMessage(`{"k":[1,2]}`),
		Level:   3,
		Note:    "remember",
		Tags:    []string{"x"},
		Secret:  "not stored",
		Any:     map[string]any{"n": 1.5},
		Topic:   "weather",
	}
}

var sessionKeys = []string{
	"test:Created", "test:Topic", "test:any", "test:editor", "test:history", "test:id", "test:level",
	"test:limit", "test:note", "test:raw", "test:scores", "test:tags", "test:user",
}

func TestSaveLoadRoundTrip(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m, hook := countedMemory(t, addr)
		raw := rawClient(t, addr)
		src := fullSession()

		require.NoError(t, m.Save(ctx, &src))
		require.Equal(t, 1, hook.count, "Save is one round trip")
		require.Equal(t, sessionKeys, serverKeys(t, raw))
		require.JSONEq(t, `{"name":"Ada","age":36}`, storedValue(t, raw, "test:user"), "json tags apply inside values")
		require.Equal(t, `"***"`, storedValue(t, raw, "test:level"))

		hook.reset()
		var dst session
		require.NoError(t, m.Load(ctx, &dst))
		require.Equal(t, 1, hook.count, "Load is one round trip")
		src.Secret = ""
		require.Equal(t, src, dst)
	})
}

// TestSaveIsOneCommand saves a struct: one MSET, or, with a TTL, one
// MULTI/EXEC transaction of SETs.
func TestSaveIsOneCommand(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		src := fullSession()
		m, hook := countedMemory(t, addr)
		require.NoError(t, m.Save(ctx, &src))
		require.Equal(t, []string{"mset"}, hook.singles)
		require.Empty(t, hook.pipelines)

		m, hook = countedMemory(t, addr, memory.WithDefaultTTL(time.Hour))
		require.NoError(t, m.Save(ctx, &src))
		require.Len(t, hook.pipelines, 1)
		names := hook.pipelines[0]
		require.Equal(t, "multi", names[0])
		require.Equal(t, "exec", names[len(names)-1])
		require.Len(t, names, len(sessionKeys)+2)
		ttl, err := rawClient(t, addr).PTTL(ctx, sessionKeys[0]).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 59*time.Minute)
	})
}

// TestSaveAtomicForReaders saves versions of a struct while another client
// reads all its keys at once: no read sees two versions mixed.
func TestSaveAtomicForReaders(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		requireAtomicSaves(t, newMemory(t, addr), rawClient(t, addr))
	})
}

// requireAtomicSaves saves 300 versions of a struct of three fields, A, B
// and C, with m, while it reads the three keys with one MGET of client: no
// read may see two versions mixed.
func requireAtomicSaves(t *testing.T, m *memory.Memory, client redis.Cmdable) {
	t.Helper()
	type triple struct{ A, B, C int }
	require.NoError(t, m.Save(ctx, &triple{}))
	done := make(chan error)
	go func() {
		defer close(done)
		for i := 1; i <= 300; i++ {
			if err := m.Save(ctx, &triple{i, i, i}); err != nil {
				done <- err
				return
			}
		}
	}()
	keys := []string{m.Prefix() + "A", m.Prefix() + "B", m.Prefix() + "C"}
	for reading := true; reading; {
		select {
		case err := <-done:
			require.NoError(t, err)
			reading = false
		default:
		}
		values, err := client.MGet(ctx, keys...).Result()
		require.NoError(t, err)
		var a, b, c struct{ Value int }
		for i, v := range []any{&a, &b, &c} {
			require.NoError(t, json.Unmarshal([]byte(values[i].(string)), v))
		}
		require.True(t, a == b && b == c, "mixed versions: %d %d %d", a.Value, b.Value, c.Value)
	}
}

func TestOmitEmpty(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "note", "kept"))

		src := fullSession()
		src.Note, src.Tags, src.Extra = "", []string{}, nil
		require.NoError(t, m.Save(ctx, &src))
		keys := serverKeys(t, raw)
		require.NotContains(t, keys, "test:tags", "an empty slice is not written")
		require.NotContains(t, keys, "test:extra", "a nil map is not written")
		requireValue(t, m, "note", "kept") // an empty omitempty field leaves the stored value alone
	})
}

func TestLoadLeavesAbsentFieldsUntouched(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		require.NoError(t, m.Set(ctx, "Topic", "from memory"))
		dst := session{Note: "mine", History: []string{"old"}, Secret: "s"}
		require.NoError(t, m.Load(ctx, &dst))
		require.Equal(t, session{Topic: "from memory", Note: "mine", History: []string{"old"}, Secret: "s"}, dst)
	})
}

func TestLoadForeignEnvelopes(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		for key, stored := range map[string]string{
			"test:user":    `{"value": {"name": "Grace", "age": 85}, "last_modified": 1732838400123456789}`,
			"test:history": `{"value": ["a", "b"], "last_modified": 1732838400123456789}`,
			"test:scores":  `{"last_modified":1,"value":{"x":2}}`,
			"test:Topic":   `"bare"`,
		} {
			require.NoError(t, raw.Set(ctx, key, stored, 0).Err())
		}
		var dst session
		require.NoError(t, m.Load(ctx, &dst))
		require.Equal(t, session{
			User:    profile{Name: "Grace", Age: 85},
			History: []string{"a", "b"},
			Scores:  map[string]int{"x": 2},
			Topic:   "bare",
		}, dst)
	})
}

func TestSaveLoadScoped(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		conv, err := m.Scope("conv_1")
		require.NoError(t, err)
		type state struct {
			Step  int    `memory:"step"`
			Topic string `memory:"topic"`
		}
		require.NoError(t, conv.Save(ctx, &state{Step: 2, Topic: "go"}))
		require.Equal(t, []string{"test:conv_1:step", "test:conv_1:topic"}, serverKeys(t, raw))

		var got state
		require.NoError(t, conv.Load(ctx, &got))
		require.Equal(t, state{Step: 2, Topic: "go"}, got)
		require.NoError(t, m.Load(ctx, &got), "the parent has none of these names")
		require.Equal(t, state{Step: 2, Topic: "go"}, got)
	})
}

func TestLoadDecodeError(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "id", "s-9"))
		require.NoError(t, raw.Set(ctx, "test:user", "{corrupt", 0).Err())
		require.NoError(t, raw.RPush(ctx, "test:history", "x").Err())

		var dst session
		err := m.Load(ctx, &dst)
		var de *memory.DecodeError
		require.ErrorAs(t, err, &de)
		require.Contains(t, err.Error(), `"test:user"`)
		require.Contains(t, err.Error(), `"test:history"`)
		require.Equal(t, "s-9", dst.ID, "the other fields are filled")
	})
}

func TestEmbeddedPointer(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		src := session{Topic: "t"} // nil *Audit: its fields are not written
		require.NoError(t, m.Save(ctx, &src))
		require.NotContains(t, serverKeys(t, raw), "test:editor")

		require.NoError(t, m.Set(ctx, "editor", "grace"))
		var dst session
		require.NoError(t, m.Load(ctx, &dst))
		require.NotNil(t, dst.Audit, "Load allocates the embedded struct it fills")
		require.Equal(t, "grace", dst.Editor)
	})
}

func TestFieldNameRules(t *testing.T) {
	type Inner struct {
		Shared string
		Deep   string
	}
	type Other struct {
		Shared string
	}
	type Tagged struct {
		X string `memory:"Deep"`
	}
	type outer struct {
		Inner         // Shared is ambiguous with Other.Shared: left out, as json does
		Other         //
		Tagged        // X tagged "Deep" wins over Inner.Deep at the same depth
		Own    string `memory:"own_name"`
	}
	m := newMemory(t, miniredisAddr(t))
	raw := rawClient(t, m.Client().(*redis.Client).Options().Addr)
	require.NoError(t, m.Save(ctx, &outer{Inner{"s1", "d"}, Other{"s2"}, Tagged{"x"}, "o"}))
	require.Equal(t, []string{"test:Deep", "test:own_name"}, serverKeys(t, raw))
	requireValue(t, m, "Deep", "x")
}

func TestBindErrors(t *testing.T) {
	type withChan struct {
		C chan int
	}
	type withFunc struct {
		F func() `memory:"f"`
	}
	type withComplex struct {
		Z complex128
	}
	type withNested struct {
		N struct{ Deep []map[string]chan int }
	}
	type withBadKey struct {
		M map[[2]int]string
	}
	type withColon struct {
		A int `memory:"a:b"`
	}
	type withSpace struct {
		A int `memory:"a b"`
	}
	var nilSession *session
	tests := []struct {
		name  string
		arg   any
		field string
		cause error // wrapped, when not nil
	}{
		{"nil", nil, "", nil},
		{"struct value", session{}, "", nil},
		{"pointer to int", new(int), "", nil},
		{"nil pointer", nilSession, "", nil},
		{"pointer to pointer", &nilSession, "", nil},
		{"chan field", &withChan{}, "C", nil},
		{"func field", &withFunc{}, "F", nil},
		{"complex field", &withComplex{}, "Z", nil},
		{"nested chan", &withNested{}, "N", nil},
		{"map with array keys", &withBadKey{}, "M", nil},
		{"colon in name", &withColon{}, "A", memory.ErrInvalidName},
		{"space in name", &withSpace{}, "A", memory.ErrInvalidName},
	}
	eachServer(t, func(t *testing.T, addr string) {
		m, hook := countedMemory(t, addr)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for op, err := range map[string]error{"Save": m.Save(ctx, tt.arg), "Load": m.Load(ctx, tt.arg)} {
					var be *memory.BindError
					require.ErrorAs(t, err, &be, op)
					require.Equal(t, tt.field, be.Field, op)
					if tt.arg != nil {
						require.Contains(t, err.Error(), fmt.Sprint(be.Type), op)
					}
					if tt.field != "" {
						require.Contains(t, err.Error(), tt.field, op)
						require.Error(t, be.Err, op)
					}
					if tt.cause != nil {
						require.ErrorIs(t, err, tt.cause, op)
					}
				}
			})
		}
		require.Zero(t, hook.count, "no command was sent")
	})
}

func TestSaveEncodeError(t *testing.T) {
	type box struct {
		V any     `memory:"v"`
		F float64 `memory:"f"`
	}
	eachServer(t, func(t *testing.T, addr string) {
		m, hook := countedMemory(t, addr)
		var ee *memory.EncodeError
		require.ErrorAs(t, m.Save(ctx, &box{V: make(chan int)}), &ee)
		require.Equal(t, "v", ee.Name)
		require.ErrorAs(t, m.Save(ctx, &box{F: math.NaN()}), &ee)
		require.Equal(t, "f", ee.Name)
		require.Zero(t, hook.count, "nothing was sent")
	})
}

func TestSaveDefaultTTLAndClosed(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithDefaultTTL(time.Minute))
		raw := rawClient(t, addr)
		type state struct{ A int }
		require.NoError(t, m.Save(ctx, &state{1}))
		ttl, err := raw.PTTL(ctx, "test:A").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 50*time.Second)

		require.NoError(t, m.Close())
		require.ErrorIs(t, m.Save(ctx, &state{2}), memory.ErrClosed)
		require.ErrorIs(t, m.Load(ctx, &state{}), memory.ErrClosed)
	})
}

func TestSaveLoadUnavailable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t), DialerRetries: 1})
	defer client.Close()
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithOfflineQueue(false))
	require.NoError(t, err)
	defer m.Close()
	type state struct{ A int }
	require.ErrorIs(t, m.Save(ctx, &state{1}), memory.ErrUnavailable)
	require.ErrorIs(t, m.Load(ctx, &state{}), memory.ErrUnavailable)
}

// storedValue returns the JSON of the value stored at key.
func storedValue(t *testing.T, raw redis.Cmdable, key string) string {
	t.Helper()
	var env struct{ Value json.RawMessage }
	require.NoError(t, json.Unmarshal([]byte(raw.Get(ctx, key).Val()), &env))
	return string(env.Value)
}
