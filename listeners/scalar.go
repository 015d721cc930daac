package listeners

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Scalar resolution follows serde_yaml (the aviso CLI's YAML library), not
// yaml.v3's own resolver, which reads YAML 1.1 octals (0010 is 8) and would
// make a file mean something else here than in the CLI.

const (
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagBool  = "!!bool"
	tagNull  = "!!null"
	tagMap   = "!!map"
	tagSeq   = "!!seq"
)

const quotedStyles = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle

// scalarValue is the JSON value of a scalar node: nil, bool, json.Number or
// string.
func scalarValue(n *yaml.Node) (any, error) {
	if n.Style&yaml.TaggedStyle != 0 {
		return taggedScalar(n.Tag, n.Value)
	}
	if n.Style&quotedStyles != 0 {
		return n.Value, nil
	}
	return plainScalar(n.Value)
}

// isNull reports whether n is a plain null (empty, ~ or null) or !!null.
func isNull(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	v, err := scalarValue(n)
	return err == nil && v == nil
}

func taggedScalar(tag, v string) (any, error) {
	switch tag {
	case tagStr:
		return v, nil
	case tagNull:
		if v == "~" || v == "null" {
			return nil, nil
		}
	case tagBool:
		if v == "true" || v == "false" {
			return v == "true", nil
		}
	case tagInt:
		if i, err := strconv.ParseInt(v, 10, 64); err == nil && isDecimal(v) {
			return json.Number(strconv.FormatInt(i, 10)), nil
		}
	case tagFloat:
		if f, ok := parseFloat(v); ok {
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
	default:
		return nil, fmt.Errorf("%w: YAML tag %s is not supported here", ErrInvalidValue, tag)
	}
	return nil, fmt.Errorf("%w: %q is not a valid %s", ErrInvalidValue, v, tag)
}

// plainScalar resolves an untagged, unquoted scalar.
func plainScalar(v string) (any, error) {
	switch v {
	case "", "~", "null":
		return nil, nil
	case "true", "false":
		return v == "true", nil
	}
	if n, ok := parseInt(v); ok {
		return n, nil
	}
	if leadingZeroDigits(v) {
		return v, nil
	}
	switch strings.TrimPrefix(v, "+") {
	case ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN":
		return nil, fmt.Errorf("%w: %s is not a JSON number; quote it to mean the string", ErrInvalidValue, v)
	}
	if f, ok := parseFloat(v); ok {
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	return v, nil
}

// leadingZeroDigits: a leading zero followed by digits is a string in YAML
// 1.2 (serde_yaml's digits_but_not_number): expver: 0001 stays "0001".
func leadingZeroDigits(v string) bool {
	v = strings.TrimLeft(v, "+-")
	if len(v) > 1 && v[0] == '0' {
		return isDigits(v[1:], 10)
	}
	return false
}

// parseInt reads a YAML 1.2 core integer as serde_yaml does: an optional
// sign, then 0x, 0o or 0b digits (at most 128 bits) or decimal digits without
// a leading zero. It returns the decimal JSON number.
func parseInt(v string) (json.Number, bool) {
	neg := strings.HasPrefix(v, "-")
	body := strings.TrimPrefix(strings.TrimPrefix(v, "-"), "+")
	if len(body) != len(v)-1 && len(body) != len(v) {
		return "", false // two signs
	}
	base := 10
	switch {
	case strings.HasPrefix(body, "0x"):
		body, base = body[2:], 16
	case strings.HasPrefix(body, "0o"):
		body, base = body[2:], 8
	case strings.HasPrefix(body, "0b"):
		body, base = body[2:], 2
	}
	// A decimal too long for a finite float64 is left to parseFloat, which
	// finds it out of range: a string, as in serde_yaml.
	if !isDigits(body, base) || (base == 10 && (leadingZeroDigits(body) || len(body) > 300)) {
		return "", false
	}
	z, ok := new(big.Int).SetString(body, base)
	if !ok || (base != 10 && z.BitLen() > 128) {
		return "", false
	}
	if neg {
		z.Neg(z)
	}
	return json.Number(z.String()), true
}

func isDigits(s string, base int) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		d := base
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		}
		if d >= base {
			return false
		}
	}
	return true
}

func isDecimal(s string) bool {
	return isDigits(strings.TrimLeft(s, "+-"), 10) && len(strings.TrimLeft(s, "+-")) >= len(s)-1
}

// parseFloat accepts Rust's f64 grammar for finite numbers: [+-] then
// digits with an optional '.', or '.' digits, then an optional exponent. Go's
// extras (hex floats, underscores, inf, nan) are strings here, and so is a
// value out of range (1e400), as in serde_yaml.
func parseFloat(v string) (float64, bool) {
	s := strings.TrimPrefix(strings.TrimPrefix(v, "-"), "+")
	if len(s) < len(v)-1 {
		return 0, false
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp && !isDecimal(exp) {
		return 0, false
	}
	whole, frac, _ := strings.Cut(mant, ".")
	if (whole == "" && frac == "") || (whole != "" && !isDigits(whole, 10)) || (frac != "" && !isDigits(frac, 10)) {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}
