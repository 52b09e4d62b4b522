package memory

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"int", 42, `{"value": 42, "last_modified": 7}`},
		{"string", "a<b>&c", `{"value": "a<b>&c", "last_modified": 7}`},
		{"null", nil, `{"value": null, "last_modified": 7}`},
		{"object", map[string]int{"a": 1}, `{"value": {"a":1}, "last_modified": 7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encode(tt.name, tt.value, 7)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		want  any
		stamp int64
	}{
		{"canonical", `{"value": [1, "a"], "last_modified": 1732838400123456789}`, []any{1.0, "a"}, 1732838400123456789},
		{"python nested", `{"value": {"a": {"b": [1, 2]}}, "last_modified": 3}`, map[string]any{"a": map[string]any{"b": []any{1.0, 2.0}}}, 3},
		{"compact", `{"value":"x","last_modified":9}`, "x", 9},
		{"reordered", `{"last_modified": 9, "value": "x"}`, "x", 9},
		{"extra members", `{"value": 1, "last_modified": 2, "writer": "py"}`, 1.0, 2},
		{"separator inside value", `{"value": "}, \"last_modified\": 5}", "last_modified": 6}`, `}, "last_modified": 5}`, 6},
		{"canonical shape, not one value", `{"value": 1, "x": 2, "last_modified": 3}`, 1.0, 3},
		{"stamp max int64", `{"value": 1, "last_modified": 9223372036854775807}`, 1.0, 9223372036854775807},
		{"stamp overflow falls back", `{"value": 1, "last_modified": 9223372036854775808}`, nil, 0},
		{"bare object", `{"value": 1}`, map[string]any{"value": 1.0}, 0},
		{"bare array", `[1]`, []any{1.0}, 0},
		{"bare string", `"s"`, "s", 0},
		{"padded", "  {\"value\": 1, \"last_modified\": 2}\n", 1.0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			stamp, err := decode([]byte(tt.data), &got)
			if tt.want == nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.stamp, stamp)
		})
	}
}

// TestSplitEnvelope reads the layouts that need no decoding of the
// envelope, and leaves the others to the general parse.
func TestSplitEnvelope(t *testing.T) {
	for _, tt := range []struct {
		name, data, value, record string
		stamp                     int64
		ok                        bool
	}{
		{"ours", `{"value": [1], "last_modified": 5}`, `[1]`, "", 5, true},
		{"ours, with a record", `{"value": [1], "ops": "w.1.2", "last_modified": 5}`, `[1]`, "w.1.2", 5, true},
		{"encoding/json's", `{"value":{"a":1},"last_modified":5}`, `{"a":1}`, "", 5, true},
		{"encoding/json's, with a record", `{"value":"x","ops":"w.1.2","last_modified":5}`, `"x"`, "w.1.2", 5, true},
		{"reordered", `{"last_modified": 5, "value": 1}`, "", "", 0, false},
		{"mixed", `{"value":1, "last_modified": 5}`, "", "", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			value, record, stamp, ok := splitEnvelope([]byte(tt.data))
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.value, string(value))
			require.Equal(t, tt.record, record)
			require.Equal(t, tt.stamp, stamp)
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, data := range []string{``, `not json`, `{"value": 1`, `{"value": 1, "last_modified": "x"}`, `{"value": 1, "last_modified": 1.5}`} {
		t.Run(data, func(t *testing.T) {
			var got any
			_, err := decode([]byte(data), &got)
			require.Error(t, err)
		})
	}
	var n int
	_, err := decode([]byte(`{"value": "text", "last_modified": 1}`), &n)
	var typeErr *json.UnmarshalTypeError
	require.ErrorAs(t, err, &typeErr, "a value of the wrong type is reported as such")
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"value": 1, "last_modified": 2}`, `{"last_modified": 2, "value": 1}`, `[1]`,
		`{"value": "}, \"last_modified\": 5}", "last_modified": 6}`,
		`{"value": [1], "ops": "abc.1.2 d.3.4.5f", "last_modified": 6}`,
		`{"value": "x", "ops": "a.1.2", "last_modified": 6}`,
		`{"value": "x\", \"ops\": \"a", "last_modified": 6}`,
		`{"ops": "a.1.2", "value": 3, "last_modified": 6}`,
		`{"value":{"a":1},"last_modified":6}`, `{"value":"x","ops":"a.1.2","last_modified":6}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, general any
		stamp, err := decode(data, &fast)
		value, wantRecord, wantStamp, wantErr := parseEnvelope(data)
		if wantErr == nil {
			wantErr = json.Unmarshal(value, &general)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decode(%q): error %v, general parse: %v", data, err, wantErr)
		}
		if err == nil {
			require.Equal(t, general, fast)
			require.Equal(t, wantStamp, stamp)
			_, record, _, err := parts(data)
			require.NoError(t, err)
			require.Equal(t, wantRecord, record)
		}
	})
}
