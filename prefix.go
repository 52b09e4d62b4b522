package memory

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// DefaultPrefix is the key prefix of a Memory when neither WithPrefix nor
	// REDIS_PREFIX sets one; it is the Python library's default.
	DefaultPrefix = "memory:"

	// separator ends every prefix and never appears in a name.
	separator = ':'

	// maxNameLen is the longest name, in bytes.
	maxNameLen = 512
)

// checkName returns an error wrapping ErrInvalidName when name is not a valid
// name: non-empty, at most 512 bytes of UTF-8, with no ':', white space or
// control characters.
func checkName(name string) error {
	if why := nameFault(name); why != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why)
	}
	return nil
}

// checkPath returns an error wrapping ErrInvalidName unless path is a name,
// or names joined by ':', as the keys of scopes are under a prefix:
// "topic", "conv_42:topic".
func checkPath(path string) error {
	for part := range strings.SplitSeq(path, string(separator)) {
		if why := nameFault(part); why != "" {
			return fmt.Errorf("%w %q: part %q: %s", ErrInvalidName, path, part, why)
		}
	}
	return nil
}

func nameFault(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxNameLen:
		return fmt.Sprintf("%d bytes, longer than %d", len(name), maxNameLen)
	case strings.IndexByte(name, separator) >= 0:
		return "contains ':', the namespace separator (use Scope)"
	}
	return textFault(name)
}

// prefixFault describes what makes p an invalid prefix, or returns "" when p
// is valid: non-empty, ending in ':', with no white space or control
// characters. Glob characters and hash tags are allowed.
func prefixFault(p string) string {
	switch {
	case p == "":
		return "empty"
	case p[len(p)-1] != separator:
		return "does not end with ':'"
	}
	return textFault(p)
}

// textFault describes the first byte sequence of s that no name or prefix may
// hold: invalid UTF-8, white space or a control character.
func textFault(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return fmt.Sprintf("white space or control character %q at byte %d", c, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Sprintf("invalid UTF-8 at byte %d", i)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Sprintf("white space or control character %q at byte %d", r, i)
		}
		i += size
	}
	return ""
}

// scanPattern returns the SCAN MATCH pattern of every key under prefix. Each
// glob metacharacter of the prefix becomes a one-character class ("[*]"),
// which Redis and miniredis both read as the literal character. The pattern
// only narrows the scan: callers still check every key with
// strings.HasPrefix.
func scanPattern(prefix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 8)
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; c {
		case '*', '?', '[':
			b.WriteByte('[')
			b.WriteByte(c)
			b.WriteByte(']')
		case '\\':
			b.WriteString(`[\\]`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('*')
	return b.String()
}

// hashTag returns the part of key that Redis Cluster hashes to choose its
// slot: the text between the first '{' and the first '}' after it, when not
// empty, and otherwise the whole key.
func hashTag(key string) string {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			return key[open+1 : open+1+end]
		}
	}
	return key
}

// oneSlot reports whether keys share a hash tag, and so a cluster slot.
func oneSlot(keys []string) bool {
	for _, key := range keys[1:] {
		if hashTag(key) != hashTag(keys[0]) {
			return false
		}
	}
	return true
}
