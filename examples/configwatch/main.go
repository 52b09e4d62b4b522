// Configwatch: a service that reacts at once when an operator, from another
// process, changes its configuration: no polling, and whoever writes (this
// library, the Python library, redis-cli) the service is told.
//
//	REDIS_URL=redis://localhost:6379 go run ./examples/configwatch
//
// Watch needs a server that tracks changes (Redis 6 or later): on the
// embedded miniredis it stops with an error saying so. It works in the
// namespace example:configwatch:, which must be empty, and removes what it
// wrote.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

const prefix = "example:configwatch:"

// config is what the service runs with.
type config struct {
	RateLimit   int  // requests per second
	Maintenance bool // refuse requests
}

func main() {
	defer demo.Redis()()
	ctx := context.Background()

	// The service: it reads its configuration, then follows it.
	service, err := memory.New(ctx, memory.WithPrefix(prefix))
	check(err)
	demo.RequireEmpty(ctx, service)
	changes, err := service.Watch(ctx, "rate_limit", "maintenance")
	if err != nil {
		log.Fatalf("%v\n(this example needs a server that tracks changes, Redis 6 or later: run it with REDIS_URL=redis://host:6379)", err)
	}
	applied := make(chan config)
	go func() {
		cfg := config{RateLimit: 10}
		for c := range changes {
			apply(&cfg, c)
			applied <- cfg
		}
		close(applied)
	}()

	// The operator, another process with a client of its own, changes the
	// configuration; each time, the service tells what it now runs with.
	operator, err := memory.New(ctx, memory.WithPrefix(prefix))
	check(err)
	for _, step := range []struct {
		what  string
		write func() error
	}{
		{"raise the rate limit", func() error { return operator.Set(ctx, "rate_limit", 100) }},
		{"start maintenance", func() error { return operator.Set(ctx, "maintenance", true) }},
		{"end maintenance", func() error { return operator.Delete(ctx, "maintenance") }},
	} {
		check(step.write())
		fmt.Printf("operator: %-21s -> service runs with %+v\n", step.what, <-applied)
	}

	check(operator.Delete(ctx, "rate_limit"))
	<-applied
	demo.Close(operator)
	demo.Close(service) // closes the channel of changes
	<-applied
	fmt.Println("service: stopped watching")
}

// apply sets the configuration change c tells; a name deleted goes back to
// its default.
func apply(cfg *config, c memory.Change) {
	switch c.Name {
	case "rate_limit":
		cfg.RateLimit = 10
		if !c.Deleted {
			check(json.Unmarshal(c.Value, &cfg.RateLimit))
		}
	case "maintenance":
		cfg.Maintenance = false
		if !c.Deleted {
			check(json.Unmarshal(c.Value, &cfg.Maintenance))
		}
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
