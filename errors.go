package memory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"syscall"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotFound is returned when a name holds no value.
	ErrNotFound = errors.New("memory: not found")
	// ErrInvalidName is returned for a name or scope that breaks the name rules.
	ErrInvalidName = errors.New("memory: invalid name")
	// ErrInvalidPrefix is returned by New for a prefix that breaks the prefix rules.
	ErrInvalidPrefix = errors.New("memory: invalid prefix")
	// ErrUnavailable is returned when the Redis server cannot be reached.
	ErrUnavailable = errors.New("memory: server unavailable")
	// ErrQueueFull is returned by a write that would queue more entries than
	// WithMaxPending allows while the server cannot be reached.
	ErrQueueFull = errors.New("memory: offline queue full")
	// ErrConflict is returned by Update when other writers kept changing the
	// value through every attempt.
	ErrConflict = errors.New("memory: update conflict")
	// ErrClosed is returned by operations on a Memory after Close.
	ErrClosed = errors.New("memory: closed")
	// ErrDropped is returned by Flush and Close for queued writes that the
	// server refused when they were delivered, and that were dropped.
	ErrDropped = errors.New("memory: queued write dropped")
)

// An EncodeError reports a value that JSON cannot carry. Nothing was written.
type EncodeError struct {
	Name string       // the name the value was meant for
	Type reflect.Type // the type of the value
	Err  error        // the encoding/json error
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("memory: cannot encode %q (%v): %v", e.Name, e.Type, e.Err)
}

func (e *EncodeError) Unwrap() error { return e.Err }

// A DecodeError reports a stored value that cannot be read: a key that is not
// a string, a string that is not JSON, or JSON that does not fit the
// destination.
type DecodeError struct {
	Key string // the Redis key, prefix included
	Err error  // the cause
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("memory: cannot decode key %q: %v", e.Key, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// opError describes a failed server operation on key (or prefix). It translates
// redis.Nil to ErrNotFound, a closed client to ErrClosed and a lost server to
// ErrUnavailable, and keeps the cause in the chain.
func opError(ctx context.Context, op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%w: %s %q", ErrNotFound, op, key)
	case errors.Is(err, redis.ErrClosed):
		return fmt.Errorf("%w: %s %q", ErrClosed, op, key)
	case ctxErr(ctx) == nil && unreachable(err):
		return fmt.Errorf("%w: %s %q: %w", ErrUnavailable, op, key, err)
	}
	return fmt.Errorf("memory: %s %q: %w", op, key, err)
}

// dropped reports whether err means the peer closed a connection it had
// accepted.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// refused reports whether err means no connection to the server could be
// made: nothing listens where it should be.
func refused(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &opErr) && opErr.Op == "dial" && !opErr.Timeout()
}

// unreachable reports whether err means the server could not be reached, as
// opposed to a server that answered with a refusal.
func unreachable(err error) bool {
	if redis.IsLoadingError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) {
		return true
	}
	for _, target := range []error{
		context.DeadlineExceeded, redis.ErrPoolTimeout, io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	return errors.As(err, &dnsErr) || errors.As(err, &netErr) && netErr.Timeout()
}
