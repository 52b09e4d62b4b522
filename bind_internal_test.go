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
	}, first)
	cached, ok := bindPlans.Load(reflect.TypeFor[state]())
	require.True(t, ok, "the plan is cached by type")
	_, second, err := bind(&state{A: 1})
	require.NoError(t, err)
	require.Same(t, &first[0], &second[0], "a second bind reuses the plan")
	require.Same(t, &cached.(*bindPlan).fields[0], &first[0])
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
