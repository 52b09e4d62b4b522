package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// A List is a JSON array of T stored under one name, as the Python
// library's synced lists are, so that Go and Python read and extend the same
// key. Every mutation is one Update: atomic across processes, stamping
// last_modified, and never losing another writer's change. A name with no
// value is an empty list.
type List[T any] struct {
	m    *Memory
	name string
}

// ListOf returns the list stored under name in m. The name is checked when
// the list is used.
func ListOf[T any](m *Memory, name string) *List[T] {
	return &List[T]{m: m, name: name}
}

// Append adds vs at the end of the list.
func (l *List[T]) Append(ctx context.Context, vs ...T) error {
	return mutate(ctx, l.m, "list append", l.name, func(list *[]T) error {
		*list = append(*list, vs...)
		return nil
	})
}

// Insert inserts v before the element at index i; i equal to the length
// appends. An index out of [0, length] is an error, and nothing is written.
func (l *List[T]) Insert(ctx context.Context, i int, v T) error {
	return mutate(ctx, l.m, "list insert", l.name, func(list *[]T) error {
		if i < 0 || i > len(*list) {
			return indexError(i, len(*list))
		}
		*list = slices.Insert(*list, i, v)
		return nil
	})
}

// Set replaces the element at index i with v.
func (l *List[T]) Set(ctx context.Context, i int, v T) error {
	return mutate(ctx, l.m, "list set", l.name, func(list *[]T) error {
		if i < 0 || i >= len(*list) {
			return indexError(i, len(*list))
		}
		(*list)[i] = v
		return nil
	})
}

// Remove removes the element at index i and returns it. While the server
// cannot be reached, it needs a list this process knows, and otherwise
// returns an error wrapping ErrUnavailable.
func (l *List[T]) Remove(ctx context.Context, i int) (T, error) {
	return update(ctx, l.m, "list remove", l.name, true, func(list *[]T) (T, error) {
		var removed T
		if i < 0 || i >= len(*list) {
			return removed, indexError(i, len(*list))
		}
		removed = (*list)[i]
		*list = slices.Delete(*list, i, i+1)
		return removed, nil
	})
}

// Pop removes the last element and returns it. Popping an empty list returns
// an error wrapping ErrNotFound. While the server cannot be reached, it needs
// a list this process knows, and otherwise returns an error wrapping
// ErrUnavailable.
func (l *List[T]) Pop(ctx context.Context) (T, error) {
	return update(ctx, l.m, "list pop", l.name, true, func(list *[]T) (T, error) {
		var popped T
		if len(*list) == 0 {
			return popped, fmt.Errorf("%w: the list is empty", ErrNotFound)
		}
		popped = (*list)[len(*list)-1]
		*list = (*list)[:len(*list)-1]
		return popped, nil
	})
}

// Len returns the length of the list.
func (l *List[T]) Len(ctx context.Context) (int, error) {
	var list []json.RawMessage
	err := l.m.Get(ctx, l.name, &list)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return len(list), err
}

// All returns the elements of the list.
func (l *List[T]) All(ctx context.Context) ([]T, error) {
	list := []T{}
	if err := l.m.Get(ctx, l.name, &list); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return list, nil
}

// Clear empties the list.
func (l *List[T]) Clear(ctx context.Context) error {
	return l.m.Set(ctx, l.name, []T{})
}

func indexError(i, length int) error {
	return fmt.Errorf("index %d out of range with length %d", i, length)
}

// A Map is a JSON object of V values stored under one name, as the Python
// library's synced dicts are. Every mutation is one Update: atomic across
// processes, stamping last_modified, and never losing another writer's
// change. A name with no value is an empty map.
type Map[V any] struct {
	m    *Memory
	name string
}

// MapOf returns the map stored under name in m. The name is checked when the
// map is used.
func MapOf[V any](m *Memory, name string) *Map[V] {
	return &Map[V]{m: m, name: name}
}

// Set sets the value of key k to v.
func (mp *Map[V]) Set(ctx context.Context, k string, v V) error {
	return mutate(ctx, mp.m, "map set", mp.name, func(m *map[string]V) error {
		if *m == nil {
			*m = map[string]V{}
		}
		(*m)[k] = v
		return nil
	})
}

// Get returns the value of key k, or an error wrapping ErrNotFound when the
// map has no key k.
func (mp *Map[V]) Get(ctx context.Context, k string) (V, error) {
	var v V
	m, err := mp.All(ctx)
	if err != nil {
		return v, err
	}
	v, ok := m[k]
	if !ok {
		return v, fmt.Errorf("%w: key %q of map %q", ErrNotFound, k, mp.m.prefix+mp.name)
	}
	return v, nil
}

// Delete removes key k. Deleting an absent key writes nothing and is not an
// error.
func (mp *Map[V]) Delete(ctx context.Context, k string) error {
	return mutate(ctx, mp.m, "map delete", mp.name, func(m *map[string]V) error {
		if _, ok := (*m)[k]; !ok {
			return errUnchanged
		}
		delete(*m, k)
		return nil
	})
}

// Update sets every key of kv to its value, in one atomic change, as
// Python's dict.update does.
func (mp *Map[V]) Update(ctx context.Context, kv map[string]V) error {
	return mutate(ctx, mp.m, "map update", mp.name, func(m *map[string]V) error {
		if *m == nil {
			*m = make(map[string]V, len(kv))
		}
		maps.Copy(*m, kv)
		return nil
	})
}

// Len returns the number of keys.
func (mp *Map[V]) Len(ctx context.Context) (int, error) {
	var m map[string]json.RawMessage
	err := mp.m.Get(ctx, mp.name, &m)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return len(m), err
}

// All returns the keys and values of the map.
func (mp *Map[V]) All(ctx context.Context) (map[string]V, error) {
	m := map[string]V{}
	if err := mp.m.Get(ctx, mp.name, &m); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return m, nil
}

// Clear removes every key.
func (mp *Map[V]) Clear(ctx context.Context) error {
	return mp.m.Set(ctx, mp.name, map[string]V{})
}
