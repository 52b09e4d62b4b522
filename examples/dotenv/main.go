// Dotenv: configuration from a .env file, as the namespacing guide shows it.
// WithEnvFile reads the file without touching the process environment, whose
// variables win over the file's.
//
//	go run ./examples/dotenv
//
// It works in the namespace example:dotenv:dev:, which must be empty, and
// removes what it wrote.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/examples/internal/demo"
)

const dotenv = `# .env
REDIS_PREFIX=example:dotenv:dev:
MEMORY_LOG_LEVEL=INFO
`

func main() {
	defer demo.Redis()()
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "dotenv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte(dotenv), 0o600); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s:\n%s\n", path, dotenv)

	// A REDIS_PREFIX in the environment would win over the file's.
	os.Unsetenv("REDIS_PREFIX")
	mem, err := memory.New(ctx, memory.WithEnvFile(path))
	if err != nil {
		log.Fatal(err)
	}
	demo.RequireEmpty(ctx, mem)
	if err := mem.Set(ctx, "value", "test"); err != nil { // uses the prefix from .env
		log.Fatal(err)
	}
	value, err := memory.GetAs[string](ctx, mem, "value")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%svalue = %q\n", mem.Prefix(), value)
	fmt.Printf("REDIS_PREFIX in the process environment: %q\n", os.Getenv("REDIS_PREFIX"))

	if err := mem.Delete(ctx, "value"); err != nil {
		log.Fatal(err)
	}
	demo.Close(mem)
}
