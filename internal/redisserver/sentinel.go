package redisserver

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name under which a Sentinel watches its master.
const MasterName = "mymaster"

// A Sentinel is a master, a replica of it, and a Sentinel that watches the
// master as MasterName and fails over to the replica once the master has
// not answered for half a second.
type Sentinel struct {
	Master, Replica, Sentinel *Server
}

// StartSentinel starts a master, a replica of it and a Sentinel watching
// them, and waits until the Sentinel knows the replica, so that it can fail
// over. The servers stop when the test ends.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	master := Start(tb)
	replica := Start(tb, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	replicaClient := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer replicaClient.Close()
	until(tb, "replica "+replica.Addr+" in sync", func(ctx context.Context) bool {
		info, _ := replicaClient.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	sentinel := start(tb, &Server{sentinel: true, args: []string{
		"--sentinel", "monitor", MasterName, "127.0.0.1", strconv.Itoa(master.Port), "1",
		"--sentinel", "down-after-milliseconds", MasterName, "500",
		"--sentinel", "failover-timeout", MasterName, "5000",
	}}, freePort)
	sentinelClient := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer sentinelClient.Close()
	until(tb, "Sentinel "+sentinel.Addr+" knows the replica", func(ctx context.Context) bool {
		replicas, _ := sentinelClient.Replicas(ctx, MasterName).Result()
		return len(replicas) == 1
	})
	return &Sentinel{Master: master, Replica: replica, Sentinel: sentinel}
}
