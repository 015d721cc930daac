package nats

import (
	"net"
	"net/url"
	"strings"
)

// RedactURL hides the password or token in the user info of a NATS server
// URL ("nats://user:pw@host" -> "nats://user:REDACTED@host",
// "nats://token@host" -> "nats://REDACTED@host"), with or without a
// scheme. Everything up to the last '@' counts as user info, so a password
// holding '@' or '/' is hidden whole. Use it for every NATS_URL that is
// logged or put into an error.
func RedactURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		prefix, rest, at = s[:i+3], s[i+3:], at-(i+3)
	}
	user, host := rest[:at], rest[at+1:]
	if name, _, hasPw := strings.Cut(user, ":"); hasPw {
		return prefix + name + ":REDACTED@" + host
	}
	return prefix + "REDACTED@" + host
}

// RedactURLs is RedactURL for a comma-separated NATS_URL.
func RedactURLs(list string) string {
	parts := SplitList(list)
	for i, p := range parts {
		parts[i] = RedactURL(p)
	}
	return strings.Join(parts, ",")
}

// PlaintextCredentialHosts returns the servers of NATS_URL (host:port,
// without credentials) that this configuration would send a token or
// password to without TLS: the URL is nats:// (or bare host:port) with no
// NATS_TLS_* file set, or ws://, the host is not loopback, and a secret is
// configured (NATS_TOKEN, NATS_TOKEN_FILE, NATS_PASSWORD,
// NATS_PASSWORD_FILE, or user info inside that URL). nkey and .creds
// authentication sign a challenge and send no secret. Empty means nothing
// to warn about. A server that demands TLS upgrades a nats:// connection
// anyway, but that is known only after connecting: the answer is about the
// configuration.
func (c ConnConfig) PlaintextCredentialHosts() []string {
	tlsOn := c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""
	secret := c.Token != "" || c.TokenFile != "" || c.Password != "" || c.PasswordFile != ""
	var hosts []string
	for _, p := range SplitList(c.URL) {
		raw := p
		if !strings.Contains(p, "://") {
			raw = "nats://" + p
		}
		u, err := url.Parse(raw)
		if err != nil {
			continue // Validate reports it
		}
		plain := (u.Scheme == "nats" && !tlsOn) || u.Scheme == "ws"
		if plain && (secret || u.User != nil) && !IsLoopbackHost(u.Hostname()) {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}

// IsLoopbackHost reports whether host (a name or an IP address, IPv6 with
// or without brackets, no port) is "localhost" or a loopback address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
