// Package demo gives the example programs a Redis server to run on, and
// keeps them from touching data they did not write.
package demo

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/alicebob/miniredis/v2"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redislog"
)

// Redis routes go-redis's log lines through slog, as an application may,
// and leaves the configuration alone when REDIS_URL or REDIS_HOST names a
// server. Otherwise it starts an embedded miniredis, says so, and points
// REDIS_URL at it, so that memory.New finds it as it would a real server.
// Call stop when the program is done.
func Redis() (stop func()) {
	redislog.Use(slog.New(slog.NewTextHandler(os.Stderr, nil)), slog.LevelWarn)
	if os.Getenv("REDIS_URL") != "" || os.Getenv("REDIS_HOST") != "" {
		return func() {}
	}
	srv, err := miniredis.Run()
	if err != nil {
		log.Fatalf("start embedded Redis: %v", err)
	}
	fmt.Printf("(no REDIS_URL or REDIS_HOST set: using an embedded miniredis at %s)\n\n", srv.Addr())
	os.Setenv("REDIS_URL", "redis://"+srv.Addr())
	return srv.Close
}

// RequireEmpty stops the program unless mem's namespace, scopes included,
// holds no key. An example writes only into a namespace of its own that was
// empty, so that it never overwrites or deletes what it did not write.
func RequireEmpty(ctx context.Context, mem *memory.Memory) {
	for key, err := range mem.Walk(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		log.Fatalf("%s already holds keys, %s%s among them: this example writes only into an empty namespace, and leaves them alone (inspect them with: go run ./cmd/memory --prefix %s keys)",
			mem.Prefix(), mem.Prefix(), key, mem.Prefix())
	}
}

// Close closes mem and stops the program if Close reports writes it could
// not deliver.
func Close(mem *memory.Memory) {
	if err := mem.Close(); err != nil {
		log.Fatal(err)
	}
}
