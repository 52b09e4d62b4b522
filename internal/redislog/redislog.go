// Package redislog routes go-redis's own log lines through log/slog, for the
// programs of this module: go-redis logs through a global logger of its own,
// which only an application may replace; the library never does.
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Use makes go-redis log through logger, at level, each line with the
// attribute source=go-redis.
func Use(logger *slog.Logger, level slog.Level) {
	redis.SetLogger(adapter{logger, level})
}

type adapter struct {
	logger *slog.Logger
	level  slog.Level
}

func (a adapter) Printf(ctx context.Context, format string, v ...any) {
	a.logger.Log(ctx, a.level, strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "go-redis")
}
