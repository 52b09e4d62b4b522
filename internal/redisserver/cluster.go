package redisserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Cluster is a Redis Cluster of masters without replicas, on loopback.
type Cluster struct {
	Addrs   []string // of the masters
	Servers []*Server
}

// StartCluster starts a Redis Cluster of n masters with args appended to
// each one's command line, spreads the slots over them with redis-cli
// --cluster create, and waits until every node says the cluster is ok. The
// servers stop when the test ends.
func StartCluster(tb testing.TB, n int, args ...string) *Cluster {
	tb.Helper()
	return startCluster(tb, n, nil, args)
}

// StartTLSCluster is StartCluster for nodes that speak TLS only, to clients
// and to each other, with the certificate of t, which must name 127.0.0.1.
func StartTLSCluster(tb testing.TB, n int, t TLS, args ...string) *Cluster {
	tb.Helper()
	return startCluster(tb, n, &t, append([]string{"--tls-cluster", "yes"}, args...))
}

func startCluster(tb testing.TB, n int, t *TLS, args []string) *Cluster {
	tb.Helper()
	cli := lookPath(tb, "redis-cli")
	c := &Cluster{}
	for range n {
		srv := start(tb, &Server{tls: t, args: append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
		}, args...)}, clusterPort)
		c.Servers = append(c.Servers, srv)
		c.Addrs = append(c.Addrs, srv.Addr)
	}
	create := []string{"--cluster", "create"}
	opts := &redis.Options{}
	if t != nil {
		create = append(create, "--tls", "--cacert", t.CAFile)
		opts.TLSConfig = t.Client
	}
	create = append(append(create, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), meetTimeout)
	defer cancel()
	// It waits for the nodes to meet, for ever if they cannot.
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		var logs strings.Builder
		for _, srv := range c.Servers {
			fmt.Fprintf(&logs, "\n%s:\n%s", srv.Addr, srv.logTail())
		}
		tb.Fatalf("redis-cli --cluster create: %v\n%s\nthe nodes' logs:%s", err, out, logs.String())
	}
	for _, addr := range c.Addrs {
		opts.Addr = addr
		client := redis.NewClient(opts)
		until(tb, "cluster node "+addr+" ok", func(ctx context.Context) bool {
			return strings.Contains(client.ClusterInfo(ctx).Val(), "cluster_state:ok")
		})
		client.Close()
	}
	return c
}

// meetTimeout bounds how long the nodes of a new cluster may take to meet:
// on a loaded machine, a CI run's once took longer than startTimeout.
const meetTimeout = 30 * time.Second

// clusterPort returns a free port whose cluster bus port, 10000 higher, is
// free too.
func clusterPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		if port := 20000 + rand.IntN(20000); free(port) && free(port+10000) {
			return port
		}
	}
	tb.Fatal("no free port pair for a cluster node")
	return 0
}
