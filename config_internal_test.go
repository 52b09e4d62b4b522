package memory

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLogLevel(t *testing.T) {
	tests := map[string]slog.Level{
		"":        slog.LevelWarn,
		"DEBUG":   slog.LevelDebug,
		"info":    slog.LevelInfo,
		"WARN":    slog.LevelWarn,
		"WARNING": slog.LevelWarn,
		"ERROR":   slog.LevelError,
	}
	for value, want := range tests {
		t.Run(value, func(t *testing.T) {
			t.Setenv("MEMORY_LOG_LEVEL", value)
			c, err := newConfig([]Option{WithURL("redis://127.0.0.1:1")})
			require.NoError(t, err)
			require.True(t, c.logger.Enabled(context.Background(), want))
			require.False(t, c.logger.Enabled(context.Background(), want-1))
		})
	}
}
