package memory_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
)

// startRedis starts the embedded server the examples run on. A real program
// names its server with REDIS_URL or WithURL instead.
func startRedis() *miniredis.Miniredis {
	srv, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	return srv
}

// open returns a Memory with prefix on srv, as ExampleNew shows in full.
func open(srv *miniredis.Miniredis, prefix string) *memory.Memory {
	m, err := memory.New(context.Background(), memory.WithURL("redis://"+srv.Addr()), memory.WithPrefix(prefix))
	if err != nil {
		log.Fatal(err)
	}
	return m
}

func ExampleNew() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()

	m, err := memory.New(ctx, memory.WithURL("redis://"+srv.Addr()), memory.WithPrefix("myapp:"))
	if err != nil {
		log.Fatal(err)
	}
	// Close says how many queued writes it could not deliver: check it.
	defer func() {
		if err := m.Close(); err != nil {
			log.Print(err)
		}
	}()
	if err := m.Set(ctx, "answer", 42); err != nil {
		log.Fatal(err)
	}

	// Another process, with the same prefix, reads what the first wrote.
	other := open(srv, "myapp:")
	defer other.Close()
	answer, err := memory.GetAs[int](ctx, other, "answer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("answer:", answer)
	fmt.Println("keys:", srv.Keys())
	// Output:
	// answer: 42
	// keys: [myapp:answer]
}

func ExampleMemory_Get() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "myapp:")
	defer m.Close()

	type Settings struct {
		Theme  string  `json:"theme"`
		Volume float64 `json:"volume"`
	}
	if err := m.Set(ctx, "settings", Settings{Theme: "dark", Volume: 0.75}); err != nil {
		log.Fatal(err)
	}
	var s Settings
	if err := m.Get(ctx, "settings", &s); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", s)

	err := m.Get(ctx, "missing", &s)
	fmt.Println(errors.Is(err, memory.ErrNotFound))
	// Output:
	// {Theme:dark Volume:0.75}
	// true
}

func ExampleMemory_Scope() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	// One scope per conversation, as Python's ConversationMemory.
	for _, id := range []string{"conv_1", "conv_2"} {
		conv, err := m.Scope(id)
		if err != nil {
			log.Fatal(err)
		}
		if err := conv.Set(ctx, "topic", "topic of "+id); err != nil {
			log.Fatal(err)
		}
	}
	conv1, _ := m.Scope("conv_1")
	topic, _ := memory.GetAs[string](ctx, conv1, "topic")
	fmt.Println(topic)
	fmt.Println(srv.Keys())

	// Clearing the parent deletes its scopes too.
	n, _ := m.Clear(ctx)
	fmt.Println("removed", n)
	// Output:
	// topic of conv_1
	// [memory:conv_1:topic memory:conv_2:topic]
	// removed 2
}

// Tenants share one client, each in its own namespace: a Memory per tenant
// costs no connection and no goroutine.
func Example_multiTenant() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()

	tenant := func(prefix string) *memory.Memory {
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(prefix))
		if err != nil {
			log.Fatal(err)
		}
		return m
	}
	mem1, mem2 := tenant("myapp:tenant_1:"), tenant("myapp:tenant_2:")
	mem1.Set(ctx, "data", "tenant 1 data")
	mem2.Set(ctx, "data", "tenant 2 data")

	data1, _ := memory.GetAs[string](ctx, mem1, "data")
	data2, _ := memory.GetAs[string](ctx, mem2, "data")
	fmt.Println(data1)
	fmt.Println(data2)

	// Deleting one tenant leaves the other untouched.
	mem1.Clear(ctx)
	names, _ := mem2.Keys(ctx)
	fmt.Println(srv.Keys(), names)
	// Output:
	// tenant 1 data
	// tenant 2 data
	// [myapp:tenant_2:data] [data]
}

func ExampleMemory_Save() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	type Session struct {
		User    string   `memory:"user"`
		Step    int      `memory:"step"`
		History []string `memory:"history"`
		Draft   string   `memory:"draft,omitempty"`
		Cache   []byte   `memory:"-"`
	}
	conv, _ := m.Scope("conv_7")
	if err := conv.Save(ctx, &Session{User: "ada", Step: 2, History: []string{"hi"}}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(srv.Keys())

	var s Session
	if err := conv.Load(ctx, &s); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", s)
	// Output:
	// [memory:conv_7:history memory:conv_7:step memory:conv_7:user]
	// {User:ada Step:2 History:[hi] Draft: Cache:[]}
}

func ExampleUpdate() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	type User struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	m.Set(ctx, "user", User{Name: "ada", Age: 30})

	// A nested change, atomic across processes: no concurrent writer's
	// change is lost. fn may run again on a conflict, so it only changes v.
	err := memory.Update(ctx, m, "user", func(u *User) error {
		u.Age = 31
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	u, _ := memory.GetAs[User](ctx, m, "user")
	fmt.Printf("%+v\n", u)
	// Output:
	// {Name:ada Age:31}
}

// Update sees the zero value for an absent name: to start from a default
// only where there is no value yet, SetIfAbsent first.
func ExampleMemory_SetIfAbsent() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	type Settings struct {
		Theme  string  `json:"theme"`
		Volume float64 `json:"volume"`
	}
	created, err := m.SetIfAbsent(ctx, "settings", Settings{Theme: "light", Volume: 0.5})
	if err != nil {
		log.Fatal(err)
	}
	err = memory.Update(ctx, m, "settings", func(s *Settings) error {
		s.Volume += 0.25
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	again, _ := m.SetIfAbsent(ctx, "settings", Settings{Theme: "dark"}) // already there: not written
	s, _ := memory.GetAs[Settings](ctx, m, "settings")
	fmt.Println(created, again, s)
	// Output:
	// true false {light 0.75}
}

func ExampleMemory_Incr() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	// On the server, in one round trip: concurrent increments never
	// conflict, and each applies once, even when its reply is lost.
	m.Incr(ctx, "visits", 1)
	visits, err := m.Incr(ctx, "visits", 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(visits)
	// Output:
	// 3
}

func ExampleMemory_Scopes() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "myapp:")
	defer m.Close()

	for _, tenant := range []string{"acme", "globex"} {
		scope, err := m.Scope(tenant) // the safe way to build a namespace from an id
		if err != nil {
			log.Fatal(err)
		}
		scope.Set(ctx, "plan", "gold")
	}
	_, err := m.Scope("acme:evil")
	fmt.Println(errors.Is(err, memory.ErrInvalidName))
	scopes, _ := m.Scopes(ctx)
	fmt.Println(scopes)
	// Output:
	// true
	// [acme globex]
}

func ExampleListOf() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	items := memory.ListOf[int](m, "items") // mem.items in Python
	items.Append(ctx, 1, 2, 3)
	items.Append(ctx, 4) // atomic: concurrent appends from many processes all land
	last, _ := items.Pop(ctx)
	all, _ := items.All(ctx)
	fmt.Println(last, all)
	// Output:
	// 4 [1 2 3]
}

func ExampleLogOf() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	type Message struct {
		Role, Text string
	}
	conv := memory.LogOf[Message](m, "conv_42") // a Redis list, one envelope per item
	conv.Append(ctx, Message{"user", "Weather in Paris?"}, Message{"agent", "Sunny, 21°C."})
	conv.Append(ctx, Message{"user", "And tomorrow?"})
	window, _ := conv.Last(ctx, 2) // the model's context window: the newest, oldest first
	n, _ := conv.Len(ctx)
	fmt.Println(n, window)
	// Output:
	// 3 [{agent Sunny, 21°C.} {user And tomorrow?}]
}

func ExampleMapOf() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	config := memory.MapOf[string](m, "config") // mem.config in Python
	config.Set(ctx, "lang", "en")
	config.Update(ctx, map[string]string{"theme": "dark"})
	lang, _ := config.Get(ctx, "lang")
	all, _ := config.All(ctx)
	fmt.Println(lang, all)
	// Output:
	// en map[lang:en theme:dark]
}

// While the server is away, writes are queued and read back from what the
// process knows; they reach the server when it returns.
func ExampleMemory_Flush() {
	srv := startRedis()
	defer srv.Close()
	ctx := context.Background()
	m := open(srv, "memory:")
	defer m.Close()

	srv.Close() // the server goes away
	if err := m.Set(ctx, "answer", 42); err != nil {
		log.Fatal(err)
	}
	answer, _ := memory.GetAs[int](ctx, m, "answer")
	fmt.Println("queued:", m.Pending(), "read back:", answer)

	srv.Restart() // and comes back
	if err := m.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued:", m.Pending(), "on the server:", srv.Exists("memory:answer"))
	// Output:
	// queued: 1 read back: 42
	// queued: 0 on the server: true
}

// Watch needs a server that tracks changes, Redis 6 or later, which
// miniredis is not: this example is compiled, not run.
func ExampleMemory_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := memory.New(ctx, memory.WithPrefix("myapp:"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	changes, err := m.Watch(ctx, "config")
	if err != nil {
		log.Fatal(err) // a server that refuses CLIENT TRACKING
	}
	for c := range changes { // until ctx ends or m is closed
		if c.Deleted {
			fmt.Println(c.Name, "deleted")
			continue
		}
		fmt.Printf("%s = %s (written %s)\n", c.Name, c.Value, c.Modified.Format(time.RFC3339))
	}
}
