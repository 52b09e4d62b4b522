package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// A List is a JSON array of T stored under one name, as the Python
// library's synced lists are, so that Go and Python read and extend the same
// key. Every mutation runs on the server in one round trip, atomically and
// exactly once, sending only the change: concurrent writers never conflict,
// and none loses another's change. A name with no value is an empty list.
//
// Append writes in place at the end of the stored value, so that its cost
// does not grow with the list; the other mutations rewrite the value on the
// server. For a history that grows without bound, see LogOf.
type List[T any] struct {
	m    *Memory
	name string
}

// ListOf returns the list stored under name in m. The name is checked when
// the list is used.
func ListOf[T any](m *Memory, name string) *List[T] {
	return &List[T]{m: m, name: name}
}

// Append adds vs at the end of the list, all of them in one atomic change.
func (l *List[T]) Append(ctx context.Context, vs ...T) error {
	key, err := l.m.key("list append", l.name)
	if err != nil || len(vs) == 0 {
		return err
	}
	elems, err := encodeValues(l.name, vs)
	if err != nil {
		return err
	}
	_, err = l.m.edit(ctx, "list append", key, op{name: "append", args: []any{bytes.Join(elems, []byte(","))}},
		editList(func(list []json.RawMessage) ([]json.RawMessage, []byte, error) {
			for _, elem := range elems {
				list = append(list, elem)
			}
			return list, nil, nil
		}), false)
	return err
}

// Insert inserts v before the element at index i; i equal to the length
// appends. An index out of [0, length] is an error, and nothing is written.
func (l *List[T]) Insert(ctx context.Context, i int, v T) error {
	key, elem, err := l.element("list insert", v)
	if err != nil {
		return err
	}
	_, err = l.m.edit(ctx, "list insert", key, op{name: "insert", args: []any{i, elem}},
		editList(func(list []json.RawMessage) ([]json.RawMessage, []byte, error) {
			if i < 0 || i > len(list) {
				return nil, nil, indexError(i, len(list))
			}
			return slices.Insert(list, i, elem), nil, nil
		}), false)
	return err
}

// Set replaces the element at index i with v. An index out of [0, length)
// is an error, and nothing is written.
func (l *List[T]) Set(ctx context.Context, i int, v T) error {
	key, elem, err := l.element("list set", v)
	if err != nil {
		return err
	}
	_, err = l.m.edit(ctx, "list set", key, op{name: "set", args: []any{i, elem}},
		editList(func(list []json.RawMessage) ([]json.RawMessage, []byte, error) {
			if i < 0 || i >= len(list) {
				return nil, nil, indexError(i, len(list))
			}
			list[i] = elem
			return list, nil, nil
		}), false)
	return err
}

// element checks l's name for op and encodes v.
func (l *List[T]) element(op string, v T) (key string, elem []byte, err error) {
	if key, err = l.m.key(op, l.name); err != nil {
		return "", nil, err
	}
	elems, err := encodeValues(l.name, []T{v})
	if err != nil {
		return "", nil, err
	}
	return key, elems[0], nil
}

// Remove removes the element at index i and returns it. While the server
// cannot be reached, it needs a list this process knows, and otherwise
// returns an error wrapping ErrUnavailable.
func (l *List[T]) Remove(ctx context.Context, i int) (T, error) {
	return l.take(ctx, "list remove", op{name: "remove", args: []any{i}}, func(n int) (int, error) {
		if i < 0 || i >= n {
			return 0, indexError(i, n)
		}
		return i, nil
	})
}

// Pop removes the last element and returns it. Popping an empty list returns
// an error wrapping ErrNotFound. While the server cannot be reached, it needs
// a list this process knows, and otherwise returns an error wrapping
// ErrUnavailable.
func (l *List[T]) Pop(ctx context.Context) (T, error) {
	return l.take(ctx, "list pop", op{name: "pop"}, func(n int) (int, error) {
		if n == 0 {
			return 0, fmt.Errorf("%w: the list is empty", ErrNotFound)
		}
		return n - 1, nil
	})
}

// take runs o, which removes the element that index chooses of a list of
// length n, and returns that element.
func (l *List[T]) take(ctx context.Context, opName string, o op, index func(n int) (int, error)) (T, error) {
	var v T
	key, err := l.m.key(opName, l.name)
	if err != nil {
		return v, err
	}
	elem, err := l.m.edit(ctx, opName, key, o, editList(func(list []json.RawMessage) ([]json.RawMessage, []byte, error) {
		i, err := index(len(list))
		if err != nil {
			return nil, nil, err
		}
		elem := list[i]
		return slices.Delete(list, i, i+1), elem, nil
	}), true)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(elem, &v); err != nil {
		return v, &DecodeError{Key: key, Err: err}
	}
	return v, nil
}

// editList makes a localChange of fn, which changes the elements of a list.
func editList(fn func([]json.RawMessage) ([]json.RawMessage, []byte, error)) localChange {
	return func(value []byte) ([]byte, []byte, error) {
		var list []json.RawMessage
		if value != nil {
			if err := json.Unmarshal(value, &list); err != nil {
				return nil, nil, err
			}
		}
		list, result, err := fn(list)
		if err != nil {
			return nil, nil, err
		}
		if list == nil {
			list = []json.RawMessage{}
		}
		next, err := json.Marshal(list)
		return next, result, err
	}
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
// library's synced dicts are. Every mutation runs on the server in one
// round trip, atomically and exactly once, sending only the change:
// concurrent writers never conflict, and none loses another's change. A
// name with no value is an empty map.
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
	return mp.set(ctx, "map set", map[string]V{k: v})
}

// Update sets every key of kv to its value, in one atomic change, as
// Python's dict.update does.
func (mp *Map[V]) Update(ctx context.Context, kv map[string]V) error {
	return mp.set(ctx, "map update", kv)
}

func (mp *Map[V]) set(ctx context.Context, opName string, kv map[string]V) error {
	key, err := mp.m.key(opName, mp.name)
	if err != nil || len(kv) == 0 {
		return err
	}
	names := slices.Sorted(maps.Keys(kv))
	values := make([]V, len(names))
	for i, k := range names {
		values[i] = kv[k]
	}
	keys, err := encodeValues(mp.name, names)
	if err != nil {
		return err
	}
	elems, err := encodeValues(mp.name, values)
	if err != nil {
		return err
	}
	args := make([]any, 0, 3*len(names))
	for i, k := range names {
		args = append(args, k, keys[i], elems[i])
	}
	_, err = mp.m.edit(ctx, opName, key, op{name: "mapset", args: args},
		editMap(func(m map[string]json.RawMessage) error {
			for i, k := range names {
				m[k] = elems[i]
			}
			return nil
		}), false)
	return err
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
	key, err := mp.m.key("map delete", mp.name)
	if err != nil {
		return err
	}
	_, err = mp.m.edit(ctx, "map delete", key, op{name: "mapdel", args: []any{k}},
		editMap(func(m map[string]json.RawMessage) error {
			delete(m, k)
			return nil
		}), false)
	return err
}

// editMap makes a localChange of fn, which changes the members of a map.
func editMap(fn func(map[string]json.RawMessage) error) localChange {
	return func(value []byte) ([]byte, []byte, error) {
		m := map[string]json.RawMessage{}
		if value != nil {
			if err := json.Unmarshal(value, &m); err != nil {
				return nil, nil, err
			}
		}
		if m == nil { // null
			m = map[string]json.RawMessage{}
		}
		if err := fn(m); err != nil {
			return nil, nil, err
		}
		next, err := json.Marshal(m)
		return next, nil, err
	}
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
