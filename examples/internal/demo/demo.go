// Package demo gives the example programs a Redis server to run on.
package demo

import (
	"fmt"
	"log"
	"os"

	"github.com/alicebob/miniredis/v2"
)

// Redis leaves the configuration alone when REDIS_URL or REDIS_HOST names a
// server. Otherwise it starts an embedded miniredis, says so, and points
// REDIS_URL at it, so that memory.New finds it as it would a real server.
// Call stop when the program is done.
func Redis() (stop func()) {
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
