package memory

import "github.com/redis/go-redis/v9"

// PipelineAlways, set, sends every command through the auto-pipeliner of a
// Memory with WithAutoPipeline, lone ones included.
var PipelineAlways = &pipelineAlways

// PipelineConns returns how many connections the auto-pipeliner of m took
// from its pools, 0 when m has none: it has sent a batch when not 0.
func PipelineConns(m *Memory) uint32 {
	p := m.s.conn.pipe
	if p == nil {
		return 0
	}
	st := p.client.PoolStats()
	n := st.Hits + st.Misses
	if st.PipelineStats != nil {
		n += st.PipelineStats.Hits + st.PipelineStats.Misses
	}
	return n
}

// OpsLua is the source of the script every write runs: benchmarks run it
// raw, for the ceiling of the same work.
var OpsLua = opsLua

// PipelineHook adds h to the client of m's auto-pipeliner, which also sends
// its batches of Sets.
func PipelineHook(m *Memory, h redis.Hook) { m.s.conn.pipe.client.AddHook(h) }
