package aviso

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"unsafe"
)

// A small validating JSON scanner, the one hand-written fast path of this
// package. Notification decoding is on the hot path, next to go-sse's
// parsing (~1.2 us per 600-byte event on the 2-core dev machine). Measured
// per 600-byte CloudEvent (BenchmarkParseCloudEvent, BenchmarkParseNotification):
// encoding/json into a struct ~5 us, json.Valid alone ~1.4 us, this scanner
// ~0.5 us including full validation. It validates the complete RFC 8259
// grammar except UTF-8, which callers check first with utf8.Valid;
// FuzzParseCloudEvent compares it with encoding/json.

const maxDepth = 10000 // the nesting limit of encoding/json

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

func errAt(off int, msg string) error { return &syntaxError{off, msg} }

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// swarMask flags (in the high bit of each byte) the bytes of w that are
// '"', '\\' or a control character (< 0x20). Borrows can flag extra bytes,
// but only above a truly flagged one, so the lowest flag is exact.
func swarMask(w uint64) uint64 {
	quote := w ^ (swarLo * '"')
	bslash := w ^ (swarLo * '\\')
	return ((quote-swarLo)&^quote | (bslash-swarLo)&^bslash | (w-swarLo*0x20)&^w) & swarHi
}

// scanString scans the string starting at b[i] == '"' and returns the index
// after its closing quote and whether it contains escapes. It skips plain
// bytes 8 at a time (SWAR).
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	start := i
	i++
	for {
		for {
			if i+8 <= len(b) {
				if m := swarMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
				continue
			}
			for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
				i++
			}
			break
		}
		if i >= len(b) {
			return 0, false, errAt(start, "unterminated string")
		}
		switch b[i] {
		case '"':
			return i + 1, escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, errAt(i, "unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, false, errAt(i, "short \\u escape")
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return 0, false, errAt(i, "invalid \\u escape")
					}
				}
				i += 6
			default:
				return 0, false, errAt(i, "invalid escape")
			}
		default:
			return 0, false, errAt(i, "control character in string")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func scanNumber(b []byte, i int) (int, error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, errAt(start, "invalid number")
	}
	var ok bool
	if i < len(b) && b[i] == '.' {
		if i, ok = requireDigits(b, i+1); !ok {
			return 0, errAt(start, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = requireDigits(b, i); !ok {
			return 0, errAt(start, "invalid number")
		}
	}
	return i, nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// requireDigits skips one or more digits at b[i]; ok is false when there is none.
func requireDigits(b []byte, i int) (int, bool) {
	if i >= len(b) || !isDigit(b[i]) {
		return i, false
	}
	return skipDigits(b, i), true
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errAt(i, "invalid literal")
	}
	return i + len(lit), nil
}

// skipValue validates the value starting at b[i] (no leading whitespace) and
// returns the index after it.
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errAt(i, "unexpected end of input")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{':
		return skipObject(b, i, depth+1)
	case c == '[':
		return skipArray(b, i, depth+1)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || isDigit(c):
		return scanNumber(b, i)
	default:
		return 0, errAt(i, fmt.Sprintf("unexpected character %q", c))
	}
}

func skipObject(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errAt(i, "nesting too deep")
	}
	return eachMember(b, i, func(_ []byte, _ bool, v int) (int, error) {
		return skipValue(b, v, depth)
	})
}

// eachMember scans the object starting at b[i] == '{'. For each member it
// calls fn with the raw key (without quotes, escapes not decoded), whether the
// key has escapes, and the index of the value; fn must scan the value and
// return the index after it. eachMember returns the index after the object.
func eachMember(b []byte, i int, fn func(key []byte, keyEscaped bool, v int) (int, error)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errAt(i, "expected string key in object")
		}
		kend, kesc, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : kend-1]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return 0, errAt(i, "expected ':' after object key")
		}
		if i, err = fn(key, kesc, skipWS(b, i+1)); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = afterMember(b, i, '}', "object"); err != nil || done {
			return i, err
		}
	}
}

// afterMember reads what follows an object member or array element at b[i]:
// a ',' (next is the index of the next member) or the closing byte (done,
// next is the index after it).
func afterMember(b []byte, i int, closing byte, what string) (next int, done bool, err error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, false, errAt(i, "unterminated "+what)
	}
	switch b[i] {
	case ',':
		return skipWS(b, i+1), false, nil
	case closing:
		return i + 1, true, nil
	}
	return 0, false, errAt(i, fmt.Sprintf("expected ',' or '%c' in %s", closing, what))
}

// decodeKey returns an object key as text, decoding escapes when present.
func decodeKey(raw []byte, escaped bool) string {
	if !escaped {
		return bytesString(raw)
	}
	return decodeEscaped(raw)
}

// decodeEscaped decodes the contents of a JSON string known to be valid and
// to contain escapes (rare: the slow path uses encoding/json).
func decodeEscaped(raw []byte) string {
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return string(raw) // unreachable for scanner-validated input
	}
	return s
}

// bytesString returns b as a string without copying; b must never be
// modified afterwards.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// stringBytes returns s as a byte slice without copying; the slice must never
// be modified.
func stringBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func skipArray(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errAt(i, "nesting too deep")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = skipValue(b, i, depth); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = afterMember(b, i, ']', "array"); err != nil || done {
			return i, err
		}
	}
}
