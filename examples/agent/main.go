// Agent: a conversation memory shared by several workers. Each conversation
// has its own scope; workers, each with its own connection as separate pods
// would have, append messages to the conversation's log, record their
// progress and count turns at the same time, and nothing is lost. The
// model's context window is the log's last few messages, read in one round
// trip however long the conversation grows.
//
//	go run ./examples/agent
//
// It works in the namespace example:agent:, which must be empty, and
// removes what it wrote.
package main

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

// Message is one entry of a conversation's history.
type Message struct {
	Worker string `json:"worker"`
	Seq    int    `json:"seq"`
	Text   string `json:"text"`
}

const (
	prefix            = "example:agent:"
	workers           = 4
	messagesPerWorker = 25
	contextWindow     = 8 // messages the model sees
)

func main() {
	defer demo.Redis()()
	ctx := context.Background()

	mem, err := memory.New(ctx, memory.WithPrefix(prefix))
	check(err)
	demo.RequireEmpty(ctx, mem)

	var wg sync.WaitGroup
	for w := range workers {
		// Each worker connects on its own, like a separate pod.
		wg.Go(func() {
			worker, err := memory.New(ctx, memory.WithPrefix(prefix))
			check(err)
			work(ctx, worker, fmt.Sprintf("worker-%d", w))
			check(worker.Close())
		})
	}
	wg.Wait()

	conv, err := mem.Scope("conv_42")
	check(err)
	log := memory.LogOf[Message](conv, "history")
	history, err := log.All(ctx)
	check(err)
	progress, err := memory.MapOf[int](conv, "progress").All(ctx)
	check(err)
	turns, err := memory.GetAs[int](ctx, conv, "turns")
	check(err)

	fmt.Printf("conversation %s\n", conv.Prefix())
	fmt.Printf("  messages in history: %d (want %d)\n", len(history), workers*messagesPerWorker)
	fmt.Printf("  turns counted:       %d (want %d)\n", turns, workers*messagesPerWorker)
	written := map[string]int{}
	for _, m := range history {
		written[m.Worker]++
	}
	for w := range workers {
		name := fmt.Sprintf("worker-%d", w)
		fmt.Printf("  %s: %d messages in history, progress %d\n", name, written[name], progress[name])
	}
	if len(history) == workers*messagesPerWorker && turns == len(history) {
		fmt.Println("nothing was lost")
	}
	window, err := log.Last(ctx, contextWindow)
	check(err)
	fmt.Printf("context window: the last %d of %d messages\n", len(window), len(history))
	// The namespace was empty: clearing the scope removes only what this
	// example wrote.
	_, err = conv.Clear(ctx)
	check(err)
	check(mem.Close())
}

// work appends messages to the shared conversation's log, records its
// progress in a map and counts turns with Incr, each change atomic across
// all workers.
func work(ctx context.Context, mem *memory.Memory, worker string) {
	conv, err := mem.Scope("conv_42")
	check(err)
	history := memory.LogOf[Message](conv, "history")
	progress := memory.MapOf[int](conv, "progress")
	for seq := range messagesPerWorker {
		check(history.Append(ctx, Message{Worker: worker, Seq: seq, Text: fmt.Sprintf("note %d from %s", seq, worker)}))
		check(progress.Set(ctx, worker, seq+1))
		_, err := conv.Incr(ctx, "turns", 1)
		check(err)
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
