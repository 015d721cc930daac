package listeners

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

const (
	// maxNodes bounds the nodes one file may expand to through aliases
	// (an alias bomb is a few lines that expand to billions of nodes).
	maxNodes = 1 << 18
	// maxDepth bounds nesting in identifiers (polygons need 3).
	maxDepth = 64
	// aliasHops bounds a chain of aliases.
	aliasHops = 64
)

var errTooLarge = fmt.Errorf("%w: too large: more than %d YAML nodes after expanding aliases", ErrInvalidValue, maxNodes)

// nodeError is an error at a node, below the key path it was found at.
type nodeError struct {
	node *yaml.Node
	path string
	err  error
}

func (e *nodeError) Error() string { return e.path + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// converter turns YAML nodes into JSON values, counting nodes against one
// budget for the whole file.
type converter struct {
	nodes int
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < aliasHops && n != nil && n.Kind == yaml.AliasNode; i++ {
		n = n.Alias
	}
	return n
}

// value is the JSON value (nil, bool, json.Number, string, []any,
// map[string]any) of n, at key path path.
func (c *converter) value(n *yaml.Node, path string, depth int) (any, error) {
	n = deref(n)
	c.nodes++
	switch {
	case n == nil || n.Kind == yaml.AliasNode:
		return nil, &nodeError{n, path, fmt.Errorf("%w: alias chain too long", ErrInvalidValue)}
	case c.nodes > maxNodes:
		return nil, &nodeError{n, path, errTooLarge}
	case depth > maxDepth:
		return nil, &nodeError{n, path, fmt.Errorf("%w: nested deeper than %d levels", ErrInvalidValue, maxDepth)}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := scalarValue(n)
		if err != nil {
			return nil, &nodeError{n, path, err}
		}
		return v, nil
	case yaml.SequenceNode:
		if err := collectionTag(n, tagSeq); err != nil {
			return nil, &nodeError{n, path, err}
		}
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := c.value(e, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		return c.mapping(n, path, depth)
	}
	return nil, &nodeError{n, path, fmt.Errorf("%w: unexpected YAML node", ErrInvalidValue)}
}

func (c *converter) mapping(n *yaml.Node, path string, depth int) (map[string]any, error) {
	if err := collectionTag(n, tagMap); err != nil {
		return nil, &nodeError{n, path, err}
	}
	out := make(map[string]any, len(n.Content)/2)
	err := eachPair(n, path, func(k string, _, vn *yaml.Node) error {
		v, err := c.value(vn, joinPath(path, k), depth+1)
		out[k] = v
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// collectionTag refuses an explicit tag other than the collection's own.
func collectionTag(n *yaml.Node, own string) error {
	if n.Style&yaml.TaggedStyle != 0 && n.Tag != own {
		return fmt.Errorf("%w: YAML tag %s is not supported here", ErrInvalidValue, n.Tag)
	}
	return nil
}

// eachPair calls fn for each key and value of mapping n, in file order. A key
// is the text of a scalar (as serde_yaml reads a string key); a key given
// twice, a collection as key and a merge key (<<) are errors at the key.
// Errors name the key below path.
func eachPair(n *yaml.Node, path string, fn func(key string, keyNode, value *yaml.Node) error) error {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn := deref(n.Content[i])
		if kn == nil || kn.Kind != yaml.ScalarNode {
			return &nodeError{n.Content[i], path, fmt.Errorf("%w: a key must be a string, not a list or mapping", ErrInvalidValue)}
		}
		k := kn.Value
		if kn.Tag == "!!merge" || k == "<<" && kn.Style&quotedStyles == 0 {
			return &nodeError{kn, joinPath(path, k), fmt.Errorf("%w: YAML merge keys (<<) are not supported; write the keys out", ErrInvalidValue)}
		}
		if seen[k] {
			return &nodeError{kn, joinPath(path, k), ErrDuplicateKey}
		}
		seen[k] = true
		if err := fn(k, kn, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
