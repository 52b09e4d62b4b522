// Multitenant: the namespacing guide in Go. Tenants and environments each get
// a prefix; what one writes, lists or clears never reaches another.
//
//	go run ./examples/multitenant
//
// Every prefix it uses lies under example:multitenant:, which must be empty;
// it removes what it wrote.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

const base = "example:multitenant:"

func main() {
	defer demo.Redis()()
	ctx := context.Background()
	root := mustNew(ctx, memory.WithPrefix(base))
	demo.RequireEmpty(ctx, root)

	// Tenants: REDIS_PREFIX is read when New runs, so each Memory keeps the
	// prefix it started with.
	os.Setenv("REDIS_PREFIX", base+"tenant_1:")
	mem1 := mustNew(ctx)
	os.Setenv("REDIS_PREFIX", base+"tenant_2:")
	mem2 := mustNew(ctx)
	os.Unsetenv("REDIS_PREFIX")

	check(mem1.Set(ctx, "data", "tenant 1 data"))
	check(mem2.Set(ctx, "data", "tenant 2 data"))
	fmt.Println(mustGet(ctx, mem1, "data")) // tenant 1 data
	fmt.Println(mustGet(ctx, mem2, "data")) // tenant 2 data

	// Environments: one prefix each. WithPrefix is the Go way to say it.
	env := cmp.Or(os.Getenv("ENVIRONMENT"), "development")
	envMem := mustNew(ctx, memory.WithPrefix(base+env+":"))
	check(envMem.Set(ctx, "config", map[string]string{"env": env}))
	fmt.Printf("%sconfig = %s\n", envMem.Prefix(), mustGet(ctx, envMem, "config"))

	// Tenant ids that come from outside: Scope checks them as names, so
	// that no id can reach into another tenant's namespace.
	acme, err := root.Scope("acme")
	check(err)
	check(acme.Set(ctx, "plan", "gold"))
	if _, err := root.Scope("acme:evil"); errors.Is(err, memory.ErrInvalidName) {
		fmt.Println(`Scope("acme:evil") refused:`, err)
	}

	// Inspecting a namespace: Keys scans (never KEYS) and lists this
	// namespace's names only, even where prefixes look alike.
	lookalike := mustNew(ctx, memory.WithPrefix(base+"tenant_10:"))
	check(lookalike.Set(ctx, "data", "tenant 10 data"))
	names, err := mem1.Keys(ctx)
	check(err)
	fmt.Printf("names of %s: %v\n", mem1.Prefix(), names)

	// Cleaning up a namespace: Clear unlinks every key under the prefix,
	// in batches, and nothing else. A prefix owns every prefix under it:
	// Clear on the root here would remove every tenant at once.
	n, err := mem1.Clear(ctx)
	check(err)
	fmt.Printf("cleared %s: %d key(s)\n", mem1.Prefix(), n)
	fmt.Println("tenant 2 still has:", mustGet(ctx, mem2, "data"))
	fmt.Println("tenant 10 still has:", mustGet(ctx, lookalike, "data"))

	for _, m := range []*memory.Memory{mem2, envMem, lookalike, acme} {
		_, err := m.Clear(ctx)
		check(err)
	}
	for _, m := range []*memory.Memory{mem1, mem2, envMem, lookalike, root} {
		check(m.Close())
	}
}

func mustNew(ctx context.Context, opts ...memory.Option) *memory.Memory {
	m, err := memory.New(ctx, opts...)
	check(err)
	return m
}

func mustGet(ctx context.Context, m *memory.Memory, name string) any {
	v, err := memory.GetAs[any](ctx, m, name)
	check(err)
	return v
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
