package memory

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBindPlanCached(t *testing.T) {
	type state struct {
		A int `memory:"a,omitempty"`
		B string
	}
	_, first, err := bind(&state{})
	require.NoError(t, err)
	require.Equal(t, []boundField{
		{name: "a", goName: "A", index: []int{0}, omitEmpty: true},
		{name: "B", goName: "B", index: []int{1}},
	}, first.fields)
	cached, ok := bindPlans.Load(reflect.TypeFor[state]())
	require.True(t, ok, "the plan is cached by type")
	_, second, err := bind(&state{A: 1})
	require.NoError(t, err)
	require.Same(t, first, second, "a second bind reuses the plan")
	require.Same(t, cached, first)

	keys := first.keysUnder("app:")
	require.Equal(t, []string{"app:a", "app:B"}, keys)
	require.Same(t, &keys[0], &first.keysUnder("app:")[0], "the keys of the last prefix are kept")
	require.Equal(t, []string{"t:a", "t:B"}, first.keysUnder("t:"))
}

func TestParseTag(t *testing.T) {
	tests := []struct {
		tag, name string
		omitEmpty bool
	}{
		{"", "", false},
		{"name", "name", false},
		{"name,omitempty", "name", true},
		{",omitempty", "", true},
		{"name,string,omitempty", "name", true},
		{"name,omitemptyx", "name", false},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			name, opts := parseTag(tt.tag)
			require.Equal(t, tt.name, name)
			require.Equal(t, tt.omitEmpty, opts.Contains("omitempty"))
		})
	}
}
