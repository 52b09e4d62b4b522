package memory

import (
	"cmp"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// A BindError reports an argument of Load or Save that cannot be bound:
// nil, not a pointer to a struct, or a struct with a field whose name breaks
// the name rules or whose type JSON cannot carry. It is returned before any
// I/O.
type BindError struct {
	Type  reflect.Type // the argument's type; nil for a nil argument
	Field string       // the Go name of the field at fault, "" when the argument is
	Err   error        // the cause, when a field is at fault
}

func (e *BindError) Error() string {
	switch {
	case e.Type == nil:
		return "memory: cannot bind nil"
	case e.Field != "":
		return fmt.Sprintf("memory: cannot bind field %s of %v: %v", e.Field, e.Type, e.Err)
	case e.Type.Kind() != reflect.Pointer:
		return fmt.Sprintf("memory: cannot bind non-pointer %v: want a pointer to a struct", e.Type)
	case e.Type.Elem().Kind() == reflect.Struct:
		return fmt.Sprintf("memory: cannot bind nil %v", e.Type)
	}
	return fmt.Sprintf("memory: cannot bind %v: want a pointer to a struct", e.Type)
}

func (e *BindError) Unwrap() error { return e.Err }

// A boundField is one field of a struct bound to one name.
type boundField struct {
	name      string // the name in the Memory
	goName    string // the Go field name, dotted through embedded structs
	index     []int  // for reflect.Value.FieldByIndex
	omitEmpty bool
}

// A bindPlan is the fields of one struct type, in field order, or the error
// that makes the type unbindable.
type bindPlan struct {
	fields []boundField
	err    error
	keys   atomic.Pointer[planKeys] // of the prefix last bound
}

// planKeys are the keys of a plan's fields under one prefix.
type planKeys struct {
	prefix string
	keys   []string
}

// keysUnder returns the key of each field under prefix, all in one
// allocation, kept for the next call with the same prefix. The slice is
// shared: do not change it.
func (p *bindPlan) keysUnder(prefix string) []string {
	if k := p.keys.Load(); k != nil && k.prefix == prefix {
		return k.keys
	}
	size := 0
	for _, f := range p.fields {
		size += len(prefix) + len(f.name)
	}
	var b strings.Builder
	b.Grow(size)
	for _, f := range p.fields {
		b.WriteString(prefix)
		b.WriteString(f.name)
	}
	all, keys := b.String(), make([]string, len(p.fields))
	for i, f := range p.fields {
		n := len(prefix) + len(f.name)
		keys[i], all = all[:n], all[n:]
	}
	p.keys.Store(&planKeys{prefix, keys})
	return keys
}

var bindPlans sync.Map // reflect.Type of a struct → *bindPlan

// bind returns the struct that arg points to and the plan of its type, or a
// *BindError.
func bind(arg any) (reflect.Value, *bindPlan, error) {
	v := reflect.ValueOf(arg)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, nil, &BindError{Type: reflect.TypeOf(arg)}
	}
	v = v.Elem()
	p, ok := bindPlans.Load(v.Type())
	if !ok {
		fields, err := planFields(v.Type())
		p, _ = bindPlans.LoadOrStore(v.Type(), &bindPlan{fields: fields, err: err})
	}
	plan := p.(*bindPlan)
	return v, plan, plan.err
}

// planFields lists the bound fields of struct type t the way encoding/json
// lists the members of its objects: exported fields, named by their memory
// tag or else their Go name, with the fields of embedded structs promoted. A
// shallower field hides deeper ones of the same name; at one depth a single
// tagged field wins, and otherwise the name is ambiguous and left out.
func planFields(t reflect.Type) ([]boundField, error) {
	type embedded struct {
		typ    reflect.Type
		index  []int
		goName string
	}
	type candidate struct {
		boundField
		tagged bool
	}
	var fields []boundField
	hidden := map[string]bool{} // names settled at a shallower depth
	visited := map[reflect.Type]bool{}
	for level := []embedded{{typ: t}}; len(level) > 0; {
		var next []embedded
		candidates := map[string][]candidate{}
		for _, e := range level {
			if visited[e.typ] {
				continue
			}
			visited[e.typ] = true
			for i := range e.typ.NumField() {
				sf := e.typ.Field(i)
				tag := sf.Tag.Get("memory")
				if tag == "-" || !jsonVisible(sf) {
					continue
				}
				name, opts := parseTag(tag)
				index := append(slices.Clip(e.index), i)
				goName := strings.TrimPrefix(e.goName+"."+sf.Name, ".")
				if ft := derefType(sf.Type); sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
					next = append(next, embedded{ft, index, goName})
					continue
				}
				if !sf.IsExported() {
					continue
				}
				c := candidate{boundField{name: name, goName: goName, index: index, omitEmpty: opts.Contains("omitempty")}, name != ""}
				if !c.tagged {
					c.name = sf.Name
				}
				if err := checkName(c.name); err != nil {
					return nil, &BindError{Type: reflect.PointerTo(t), Field: goName, Err: err}
				}
				if err := checkJSONType(sf.Type); err != nil {
					return nil, &BindError{Type: reflect.PointerTo(t), Field: goName, Err: err}
				}
				candidates[c.name] = append(candidates[c.name], c)
			}
		}
		for name, cs := range candidates {
			if hidden[name] {
				continue
			}
			hidden[name] = true
			if tagged := slices.DeleteFunc(slices.Clone(cs), func(c candidate) bool { return !c.tagged }); len(tagged) == 1 {
				cs = tagged
			}
			if len(cs) == 1 {
				fields = append(fields, cs[0].boundField)
			}
		}
		level = next
	}
	slices.SortFunc(fields, func(a, b boundField) int { return slices.Compare(a.index, b.index) })
	return fields, nil
}

// jsonVisible reports whether encoding/json can reach field sf: exported, or
// an embedded struct (not a pointer to an unexported one) whose exported
// fields it promotes.
func jsonVisible(sf reflect.StructField) bool {
	if sf.IsExported() {
		return true
	}
	return sf.Anonymous && sf.Type.Kind() == reflect.Struct
}

func derefType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

// tagOptions is the comma-separated list of options after a tag's name.
type tagOptions string

// parseTag splits a memory tag into its name and options.
func parseTag(tag string) (string, tagOptions) {
	name, opts, _ := strings.Cut(tag, ",")
	return name, tagOptions(opts)
}

// Contains reports whether o holds option.
func (o tagOptions) Contains(option string) bool {
	for s := string(o); s != ""; {
		var opt string
		opt, s, _ = strings.Cut(s, ",")
		if opt == option {
			return true
		}
	}
	return false
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// checkJSONType returns a *json.UnsupportedTypeError when no value of type t
// can be encoded as JSON: channels, funcs, complex numbers, unsafe pointers,
// maps with keys JSON cannot name, or types holding any of these, unless a
// type encodes itself as a json.Marshaler or encoding.TextMarshaler.
func checkJSONType(t reflect.Type) error {
	return checkJSONTypeSeen(t, map[reflect.Type]bool{})
}

func checkJSONTypeSeen(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	for _, self := range []reflect.Type{t, reflect.PointerTo(t)} {
		if self.Implements(jsonMarshalerType) || self.Implements(textMarshalerType) {
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return &json.UnsupportedTypeError{Type: t}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkJSONTypeSeen(t.Elem(), seen)
	case reflect.Map:
		switch k := t.Key(); k.Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !k.Implements(textMarshalerType) {
				return &json.UnsupportedTypeError{Type: t}
			}
		}
		return checkJSONTypeSeen(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			sf := t.Field(i)
			if sf.Tag.Get("json") == "-" || !jsonVisible(sf) {
				continue
			}
			if err := checkJSONTypeSeen(sf.Type, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// Save writes every bound field of the struct src points to under the
// field's name, in one round trip: on a single Redis node, one MULTI/EXEC
// transaction, so that other clients see all the new values or none. On a
// cluster, Save is one transaction when the keys share a hash tag (a prefix
// such as "{tenant1}:" makes them), and otherwise one pipeline, atomic key by
// key.
//
// Fields bind the way encoding/json names object members, with the tag key
// memory: `memory:"name"` names a field, `memory:"-"` skips it, and the
// option omitempty leaves a field with an empty value unwritten. Untagged
// exported fields bind by their Go name, and the fields of embedded structs
// are promoted. Each field's value is JSON, where json tags apply.
//
// src must be a non-nil pointer to a struct whose bound names follow the name
// rules and whose field types JSON can carry; otherwise Save returns a
// *BindError and sends nothing. While the server cannot be reached, the
// fields are queued as Set queues a value, all of them or, when the queue is
// full, none.
func (m *Memory) Save(ctx context.Context, src any) error {
	v, fields, keys, err := m.bindFields("save", src)
	if err != nil {
		return err
	}
	now := m.s.link.store.stamp()
	saved, values, err := encodeFields(v, fields, now)
	if err != nil {
		return err
	}
	if len(saved) == 0 {
		return nil
	}
	newPut := func(j int) *put { return &put{value: values[j], stamp: now, ttl: cmp.Or(m.s.ttl, -1)} }
	direct := true
	for _, i := range saved {
		direct = direct && m.direct(keys[i])
	}
	if direct {
		err := m.saveAll(ctx, keys, saved, values)
		if err == nil {
			for j, i := range saved {
				m.s.link.store.rememberPut(keys[i], newPut(j))
			}
			return nil
		}
		if !m.unknown(ctx, err) {
			for _, i := range saved { // they may have applied
				m.s.link.store.forget(keys[i])
			}
			return opError(ctx, "save", m.prefix, err)
		}
		m.s.link.failed(m.s.acct, err)
	}
	entries := make([]*entry, len(saved))
	for j, i := range saved {
		entries[j] = &entry{key: keys[i], acct: m.s.acct, w: newPut(j), sent: direct}
	}
	return m.s.link.enqueue(entries...)
}

// bindFields returns, for the operation op, the struct arg points to, its
// bound fields and their keys under m's prefix; or a *BindError, or an error
// wrapping ErrClosed.
func (m *Memory) bindFields(op string, arg any) (v reflect.Value, fields []boundField, keys []string, err error) {
	v, plan, err := bind(arg)
	if err != nil {
		return v, nil, nil, err
	}
	if err := m.open(op); err != nil {
		return v, nil, nil, err
	}
	return v, plan.fields, plan.keysUnder(m.prefix), nil
}

// encodeFields returns the envelopes of the fields of v that Save writes,
// stamped with now, and their indexes in fields.
func encodeFields(v reflect.Value, fields []boundField, now int64) (saved []int, values [][]byte, err error) {
	e := newEncoder()
	defer e.release()
	for i, f := range fields {
		fv, err := v.FieldByIndexErr(f.index)
		if err != nil || f.omitEmpty && isEmpty(fv) {
			continue // behind a nil embedded pointer, or empty
		}
		// Through a pointer, as encoding/json sees the fields of an
		// addressable struct: pointer-receiver MarshalJSON methods apply,
		// and the value is not copied.
		if err := e.add(f.name, fv.Addr().Interface(), now); err != nil {
			err.(*EncodeError).Type = fv.Type()
			return nil, nil, err
		}
		saved = append(saved, i)
	}
	return saved, e.envelopes(), nil
}

// saveAll writes values[j] under keys[saved[j]] in one round trip, as one
// atomic command: one MSET, or, where a TTL applies, one MULTI/EXEC
// transaction of SETs; unless the client is a cluster and the keys span
// slots, where neither can run: the writes are then a pipeline of SETs,
// atomic one by one. A prefix with a hash tag keeps a Memory's keys in one
// slot.
func (m *Memory) saveAll(ctx context.Context, keys []string, saved []int, values [][]byte) error {
	written := make([]string, len(saved))
	for j, i := range saved {
		written[j] = keys[i]
	}
	_, cluster := m.s.client.(*redis.ClusterClient)
	together := !cluster || oneSlot(written)
	if together && m.s.ttl == 0 {
		args := make([]any, 0, 1+2*len(written))
		args = append(args, "mset")
		for j, key := range written {
			args = append(args, key, values[j])
		}
		return m.s.conn.write(ctx, args...).Err()
	}
	sets := make([][]any, len(written))
	for j, key := range written {
		sets[j] = []any{"set", key, values[j]}
		if m.s.ttl > 0 {
			sets[j] = append(sets[j], "px", m.s.ttl.Milliseconds())
		}
	}
	cmds, err := m.s.conn.writeAll(ctx, together, sets)
	if cause := firstError(cmds); redis.IsExecAbortError(err) && cause != nil {
		err = cause // why the transaction was discarded
	}
	return err
}

// firstError returns the first error of cmds that is not EXECABORT.
func firstError(cmds []*redis.Cmd) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !redis.IsExecAbortError(err) {
			return err
		}
	}
	return nil
}

// loadAll reads keys in one round trip, or from the local cache, and
// returns a function giving what the i-th key holds as far as this process
// knows, or the server's error for it.
func (m *Memory) loadAll(ctx context.Context, keys []string) (get func(i int, key string) ([]byte, error), err error) {
	if c := m.cacheFor(ctx, keys...); c != nil {
		stored, errs, err := c.getAll(ctx, m.s.conn, keys)
		return func(i int, _ string) ([]byte, error) { return stored[i], errs[i] }, err
	}
	stored, errs := make([][]byte, len(keys)), make([]error, len(keys))
	for attempt := 1; ; attempt++ {
		tickets := make([]ticket, len(keys))
		for i, key := range keys {
			tickets[i] = m.s.link.store.reserve(key)
		}
		cmds, _, err := m.s.conn.getAll(ctx, keys, false)
		// Exec reports the first failed command, a miss included: only
		// an error that is no reply of the server's fails them all.
		if err != nil && !isReply(err) {
			for _, key := range keys {
				m.s.link.store.unreserve(key)
			}
			return nil, err
		}
		again := false
		for i, key := range keys {
			data, err := cmds[i].Bytes()
			stored[i], errs[i] = nil, nil
			switch {
			case errors.Is(err, redis.Nil):
				data = nil
			case err != nil:
				errs[i] = err
				m.s.link.store.unreserve(key)
				continue
			}
			// A read that crossed the delivery of a queued write is
			// read again, as fetch does.
			k, ok, crossed := m.s.link.queue.found(key, data, tickets[i])
			if crossed && attempt < fetchAttempts {
				again = true
				continue
			}
			if !ok {
				k, _, _ = m.s.link.store.recall(key)
			}
			stored[i] = k.stored
		}
		if !again {
			return func(i int, _ string) ([]byte, error) { return stored[i], errs[i] }, nil
		}
	}
}

// isEmpty reports whether omitempty leaves v unwritten: a zero value, or an
// empty slice or map.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// Load fills the bound fields of the struct dst points to from their names,
// in one round trip. Fields whose names have no value keep theirs. A value
// that cannot be decoded into its field gives a *DecodeError naming its key,
// while the other fields are still filled; several are joined. Fields bind as
// Save describes, and a bad dst gives a *BindError before any I/O.
//
// While the server cannot be reached, Load fills the fields from what this
// process knows, and returns an error wrapping ErrUnavailable if it does not
// know them all.
func (m *Memory) Load(ctx context.Context, dst any) error {
	v, fields, keys, err := m.bindFields("load", dst)
	if err != nil || len(fields) == 0 {
		return err
	}
	var cause error
	if !m.lost() {
		get, err := m.loadAll(ctx, keys)
		if err == nil {
			return m.fill(v, fields, keys, get)
		}
		if !offline(ctx, err) {
			return opError(ctx, "load", m.prefix, err)
		}
		cause = err
	}
	unknown := 0
	err = m.fill(v, fields, keys, func(_ int, key string) ([]byte, error) {
		k, ok, _ := m.s.link.store.recall(key)
		if !ok {
			unknown++
		}
		return k.stored, nil
	})
	if unknown > 0 {
		err = errors.Join(err, fmt.Errorf("%d of %d fields: %w", unknown, len(fields), errOffline("load", m.prefix, cause)))
	}
	return err
}

// fill decodes into the fields of struct v, whose keys are keys, the strings
// value returns for them (nil: none, the field left as it is), and joins the
// errors.
func (m *Memory) fill(v reflect.Value, fields []boundField, keys []string, value func(i int, key string) ([]byte, error)) error {
	var errs []error
	for i, f := range fields {
		key := keys[i]
		data, err := value(i, key)
		switch {
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			errs = append(errs, &DecodeError{Key: key, Err: err})
			continue
		case err != nil:
			return opError(context.Background(), "load", key, err)
		case data == nil:
			continue
		}
		if _, err := decode(data, fieldAddr(v, f.index)); err != nil {
			errs = append(errs, &DecodeError{Key: key, Err: err})
		}
	}
	return errors.Join(errs...)
}

// isReply reports whether err is a reply of the server's, redis.Nil included.
func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

// fieldAddr returns a pointer to the field of struct v at index, allocating
// the nil embedded structs on the way.
func fieldAddr(v reflect.Value, index []int) any {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v.Addr().Interface()
}
