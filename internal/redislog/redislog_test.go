package redislog_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redislog"
)

func TestUse(t *testing.T) {
	var buf bytes.Buffer
	redislog.Use(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelWarn)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	client := redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: -1})
	defer client.Close()
	require.Error(t, client.Ping(context.Background()).Err())
	require.Regexp(t, `level=WARN msg="redis: .*failed to dial.*" source=go-redis\n`, buf.String())
}
