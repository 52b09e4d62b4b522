package memory_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/redis-memory/memory"
)

// BenchmarkRestore restores 100,000 records into an empty namespace, against
// raw go-redis writing the same envelopes unconditionally in pipelines of the
// same size: the ceiling of any client. Restore also checks each record's
// stamp against the server's, in one script each.
func BenchmarkRestore(b *testing.B) {
	const n = 100_000
	m, client := benchSetup(b)
	records := make(map[string]memory.Record, n)
	envelopes := make(map[string]string, n)
	for i := range n {
		name := "r" + strconv.Itoa(i)
		records[name] = memory.Record{Value: json.RawMessage(strconv.Itoa(i)), LastModified: int64(i) + 1}
		envelopes["memory:"+name] = fmt.Sprintf(`{"value": %d, "last_modified": %d}`, i, i+1)
	}
	empty := func() error {
		_, err := m.Clear(ctx)
		return err
	}
	compare(b,
		variant{"memory", func() error {
			if err := empty(); err != nil {
				return err
			}
			written, err := m.Restore(ctx, records, false)
			if err == nil && written != n {
				err = fmt.Errorf("restored %d of %d", written, n)
			}
			return err
		}},
		variant{"raw-pipelined-set", func() error {
			if err := empty(); err != nil {
				return err
			}
			pipe := client.Pipeline()
			for key, value := range envelopes {
				pipe.Set(ctx, key, value, 0)
				if pipe.Len() == 1000 {
					if _, err := pipe.Exec(ctx); err != nil {
						return err
					}
				}
			}
			_, err := pipe.Exec(ctx)
			return err
		}},
	)
}
