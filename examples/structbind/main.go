// Structbind: an agent's session state bound to a struct. One process saves
// it, another loads it; each field is one named value, as an attribute of the
// Python library's Memory is.
//
//	go run ./examples/structbind
//
// It works in the namespace example:structbind:, which must be empty, and
// removes what it wrote.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

// Message is one turn of the conversation; its json tags shape the value.
type Message struct {
	Role string `json:"role"`
	Text string `json:"text"`
}

// Session is the agent's state. Each field is one name in the conversation's
// scope: `memory:"name"` names it, omitempty skips it when empty, and "-"
// keeps it out of Redis.
type Session struct {
	User      string            `memory:"user"`
	Step      int               `memory:"step"`
	History   []Message         `memory:"history"`
	Prefs     map[string]string `memory:"prefs,omitempty"`
	StartedAt time.Time         `memory:"started_at"`
	Draft     string            `memory:"draft,omitempty"`
	scratch   string            // unexported: never stored
}

const prefix = "example:structbind:"

func main() {
	defer demo.Redis()()
	ctx := context.Background()

	// The first process: an agent worker handling conversation conv_7.
	worker, err := memory.New(ctx, memory.WithPrefix(prefix))
	check(err)
	demo.RequireEmpty(ctx, worker)
	conv, err := worker.Scope("conv_7")
	check(err)

	s := Session{
		User: "ada",
		Step: 2,
		History: []Message{
			{Role: "user", Text: "What is the weather in Paris?"},
			{Role: "agent", Text: "Sunny, 21°C."},
		},
		Prefs:     map[string]string{"units": "metric"},
		StartedAt: time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC),
		scratch:   "thinking...",
	}
	check(conv.Save(ctx, &s)) // one round trip, one transaction

	names, err := conv.Keys(ctx)
	check(err)
	fmt.Printf("saved under %s: %v\n", conv.Prefix(), names)

	// Another process, say after a restart or on another pod, picks the
	// conversation up.
	other, err := memory.New(ctx, memory.WithPrefix(prefix))
	check(err)
	conv2, err := other.Scope("conv_7")
	check(err)

	var loaded Session
	check(conv2.Load(ctx, &loaded)) // one round trip
	fmt.Printf("loaded: user=%s step=%d prefs=%v started=%s\n",
		loaded.User, loaded.Step, loaded.Prefs, loaded.StartedAt.Format(time.RFC3339))
	for _, m := range loaded.History {
		fmt.Printf("  %s: %s\n", m.Role, m.Text)
	}

	// Single fields stay plain names: the next step updates one of them.
	check(conv2.Set(ctx, "step", loaded.Step+1))
	step, err := memory.GetAs[int](ctx, conv, "step")
	check(err)
	fmt.Println("step seen by the first process:", step)

	// The namespace was empty: clearing the scope removes only what this
	// example wrote.
	_, err = conv.Clear(ctx)
	check(err)
	check(worker.Close())
	check(other.Close())
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
