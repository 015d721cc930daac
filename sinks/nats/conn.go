package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// AuthOptions returns the nats.go options for the authentication and TLS
// settings of c (NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_TOKEN(_FILE),
// NATS_USER, NATS_PASSWORD(_FILE), NATS_TLS_*). Files named by a setting
// are checked now; token and password files are read again at every
// (re)connect so that rotated secrets work. Errors are *bridge.FieldError
// naming the field to fix.
func (c ConnConfig) AuthOptions() ([]natsgo.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var opts []natsgo.Option
	switch {
	case c.CredsFile != "":
		if _, err := os.Stat(c.CredsFile); err != nil {
			return nil, bridge.FieldErrorf("CredsFile", "%w", err)
		}
		opts = append(opts, natsgo.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		o, err := natsgo.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, bridge.FieldErrorf("NKeySeedFile", "%s: %w", c.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case c.Token != "":
		opts = append(opts, natsgo.Token(c.Token))
	case c.TokenFile != "":
		file := c.TokenFile
		if _, err := readSecretFile(file); err != nil {
			return nil, bridge.FieldErrorf("TokenFile", "%w", err)
		}
		opts = append(opts, natsgo.TokenHandler(func() string {
			tok, err := readSecretFile(file)
			if err != nil {
				// The server refuses the empty token; the reconnect loop
				// retries and reads the file again.
				return ""
			}
			return tok
		}))
	case c.User != "" && c.PasswordFile != "":
		user, file := c.User, c.PasswordFile
		if _, err := readSecretFile(file); err != nil {
			return nil, bridge.FieldErrorf("PasswordFile", "%w", err)
		}
		opts = append(opts, natsgo.UserInfoHandler(func() (string, string) {
			pw, _ := readSecretFile(file)
			return user, pw
		}))
	case c.User != "":
		opts = append(opts, natsgo.UserInfo(c.User, c.Password))
	}
	if c.TLSCAFile != "" {
		o := natsgo.RootCAs(c.TLSCAFile)
		if err := o(&natsgo.Options{}); err != nil {
			return nil, bridge.FieldErrorf("TLSCAFile", "%w", err)
		}
		opts = append(opts, o)
	}
	if c.TLSCertFile != "" {
		o := natsgo.ClientCert(c.TLSCertFile, c.TLSKeyFile)
		if err := o(&natsgo.Options{}); err != nil {
			return nil, &bridge.FieldError{Fields: []string{"TLSCertFile", "TLSKeyFile"}, Err: err}
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// readSecretFile reads a secret file, dropping one trailing newline.
func readSecretFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}

// ConnectOptions are the parts of a connection that are not configuration.
type ConnectOptions struct {
	// Logger receives the connection events; nil discards them.
	Logger *slog.Logger
	// Events prefixes the connection log event names, e.g. "sink.nats"
	// gives sink.nats.disconnected and sink.nats.reconnected.
	Events string
	// Extra options are applied after the ones Connect builds.
	Extra []natsgo.Option
}

// Connect dials the servers of c with c's authentication and TLS, reconnects
// forever (nats.go's reconnect loop), keeps no reconnect buffer (a publish
// while disconnected fails instead of being queued), and logs connection
// events without secrets. It fails when no server answers before ctx is done,
// with a *bridge.RetryableError when waiting can fix that (no server
// answers yet, a timeout). Several users may share the connection (the
// sink through Options.Conn, the NATS KV checkpoint store); its opener
// closes it after them.
func Connect(ctx context.Context, c ConnConfig, o ConnectOptions) (*natsgo.Conn, error) {
	c = c.withDefaults()
	auth, err := c.AuthOptions()
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ev := o.Events
	if ev == "" {
		ev = "nats"
	}
	opts := []natsgo.Option{
		natsgo.Name(c.Name),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(c.ReconnectWait),
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if err == nil && nc.IsClosed() {
				// Our own Close (nats.go reports it as a disconnect too);
				// the closed event follows.
				return
			}
			log.Warn(ev+".disconnected", "url", nc.ConnectedUrlRedacted(), "error", errText(err))
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info(ev+".reconnected", "url", nc.ConnectedUrlRedacted(), "server_id", nc.ConnectedServerId())
		}),
		natsgo.ClosedHandler(func(nc *natsgo.Conn) {
			log.Info(ev+".closed", "error", errText(nc.LastError()))
		}),
		natsgo.ErrorHandler(func(nc *natsgo.Conn, sub *natsgo.Subscription, err error) {
			attrs := []any{"error", errText(err)}
			if sub != nil {
				attrs = append(attrs, "subscription", sub.Subject)
			}
			log.Warn(ev+".error", attrs...)
		}),
		natsgo.LameDuckModeHandler(func(nc *natsgo.Conn) {
			log.Warn(ev+".lame_duck", "url", nc.ConnectedUrlRedacted())
		}),
	}
	opts = append(opts, auth...)
	opts = append(opts, o.Extra...)

	urls := strings.Join(SplitList(c.URL), ",")
	type result struct {
		nc  *natsgo.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := natsgo.Connect(urls, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, startError(bridge.FieldErrorf("URL", "%s: connect: %w", RedactURLs(urls), r.err))
		}
		log.Info(ev+".connected", "url", r.nc.ConnectedUrlRedacted(), "server_id", r.nc.ConnectedServerId())
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, startError(bridge.FieldErrorf("URL", "%s: connect: %w", RedactURLs(urls), ctx.Err()))
	}
}

// connect returns o.Conn when the caller shares a connection (own is
// false: the sink leaves it open) or a new connection the sink owns.
func (o Options) connect(ctx context.Context, c ConnConfig) (nc *natsgo.Conn, own bool, err error) {
	if o.Conn != nil {
		return o.Conn, false, nil
	}
	nc, err = Connect(ctx, c, ConnectOptions{Logger: o.logger(), Events: "sink.nats"})
	return nc, err == nil, err
}

// closeIfOwned closes nc when its user opened it.
func closeIfOwned(nc *natsgo.Conn, own bool) {
	if own {
		nc.Close()
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// connHealth is the HealthReporter answer for a connection.
func connHealth(nc *natsgo.Conn) error {
	switch st := nc.Status(); st {
	case natsgo.CONNECTED:
		return nil
	case natsgo.RECONNECTING:
		return errors.New("NATS: disconnected, reconnecting")
	default:
		return fmt.Errorf("NATS: connection %s", strings.ToLower(st.String()))
	}
}

// reconnects returns how many times nc has re-established its connection.
// Publishes record it before sending: a change while publishes are
// outstanding means they may have been lost with the old connection.
func reconnects(nc *natsgo.Conn) uint64 {
	return nc.Stats().Reconnects
}

// deadline returns ctx bounded by d when ctx has no earlier deadline.
func deadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
