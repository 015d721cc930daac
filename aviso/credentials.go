package aviso

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Credentials supplies the Authorization header of each request.
// Implementations must be safe for concurrent use.
type Credentials interface {
	// Authorization returns the header value; "" sends no header.
	Authorization(ctx context.Context) (string, error)
	// Refresh re-reads the secret (a token or password file) after a 401.
	Refresh(ctx context.Context) error
}

// BearerToken sends "Authorization: Bearer <token>".
func BearerToken(token string) Credentials {
	return staticCredentials{header: "Bearer " + token, scheme: "Bearer"}
}

// BasicAuth sends HTTP basic credentials.
func BasicAuth(user, password string) Credentials {
	return staticCredentials{header: basicHeader(user, password), scheme: "Basic"}
}

// BearerTokenFile sends the contents of the file at path (surrounding
// whitespace trimmed) as a bearer token. The file is read at first use and
// again by Refresh, so a rotated secret is picked up after a 401.
func BearerTokenFile(path string) Credentials {
	return &fileCredentials{path: path, scheme: "Bearer", render: func(s string) string { return "Bearer " + s }}
}

// BasicAuthFile sends basic credentials whose password is the contents of
// the file at passwordPath (surrounding whitespace trimmed), read at first use
// and again by Refresh.
func BasicAuthFile(user, passwordPath string) Credentials {
	return &fileCredentials{path: passwordPath, scheme: "Basic", render: func(s string) string { return basicHeader(user, s) }}
}

func basicHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

type staticCredentials struct{ header, scheme string }

func (c staticCredentials) Authorization(context.Context) (string, error) { return c.header, nil }
func (c staticCredentials) Refresh(context.Context) error                 { return nil }

// String and GoString keep the secret out of logs and %v/%#v output.
func (c staticCredentials) String() string   { return c.scheme + " credentials (redacted)" }
func (c staticCredentials) GoString() string { return c.String() }

type fileCredentials struct {
	path, scheme string
	render       func(secret string) string

	mu     sync.Mutex
	header string
}

func (c *fileCredentials) Authorization(context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.header == "" {
		if err := c.load(); err != nil {
			return "", err
		}
	}
	return c.header, nil
}

func (c *fileCredentials) Refresh(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.load()
}

func (c *fileCredentials) load() error {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return fmt.Errorf("reading %s secret file: %w", c.scheme, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return fmt.Errorf("%s secret file %s is empty", c.scheme, c.path)
	}
	c.header = c.render(s)
	return nil
}

func (c *fileCredentials) String() string {
	return c.scheme + " credentials from " + c.path + " (redacted)"
}
func (c *fileCredentials) GoString() string { return c.String() }
