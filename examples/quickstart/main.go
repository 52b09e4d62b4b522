// Quickstart: one process writes, another reads, as in the Python library's
// quickstart.
//
//	go run ./examples/quickstart
//
// It works in the namespace example:quickstart:, which must be empty, and
// removes what it wrote.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

type Settings struct {
	Theme  string  `json:"theme"`
	Volume float64 `json:"volume"`
}

const prefix = "example:quickstart:"

func main() {
	defer demo.Redis()()
	ctx := context.Background()

	// New reads REDIS_URL (or REDIS_HOST and REDIS_PORT). WithPrefix wins
	// over REDIS_PREFIX: this example keeps to a namespace of its own.
	mem, err := memory.New(ctx, memory.WithPrefix(prefix))
	if err != nil {
		log.Fatal(err)
	}
	demo.RequireEmpty(ctx, mem)

	// mem.answer = 42
	if err := mem.Set(ctx, "answer", 42); err != nil {
		log.Fatal(err)
	}
	answer, err := memory.GetAs[int](ctx, mem, "answer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("answer:", answer)

	// Across processes or instances: a second Memory sees the same value.
	mem2, err := memory.New(ctx, memory.WithPrefix(prefix))
	if err != nil {
		log.Fatal(err)
	}
	answer, err = memory.GetAs[int](ctx, mem2, "answer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("answer from another instance:", answer)

	// Any value JSON can carry, structs included.
	if err := mem.Set(ctx, "settings", Settings{Theme: "dark", Volume: 0.75}); err != nil {
		log.Fatal(err)
	}
	var settings Settings
	if err := mem2.Get(ctx, "settings", &settings); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("settings: %+v\n", settings)

	// A scope per conversation keeps its names apart.
	conv, err := mem.Scope("conv_42")
	if err != nil {
		log.Fatal(err)
	}
	if err := conv.Set(ctx, "topic", "weather"); err != nil {
		log.Fatal(err)
	}
	names, err := mem.Keys(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("names under %q: %v (the scope's keys live under %q)\n", mem.Prefix(), names, conv.Prefix())

	// Remove what this example wrote, and nothing else.
	for _, name := range []string{"answer", "settings"} {
		if err := mem.Delete(ctx, name); err != nil {
			log.Fatal(err)
		}
	}
	if err := conv.Delete(ctx, "topic"); err != nil {
		log.Fatal(err)
	}

	// Close reports the writes it could not deliver, if the server was
	// lost: check its error.
	for _, m := range []*memory.Memory{mem, mem2} {
		if err := m.Close(); err != nil {
			log.Fatal(err)
		}
	}
}
