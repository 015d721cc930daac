// Package harness runs the built aviso-bridge binary as a subprocess for the
// end-to-end suites in package integration and integration/containers, in
// the manner of net/http/httptest: Build compiles ./cmd/aviso-bridge once,
// Start runs it with exactly the given environment (configuration only
// through environment variables, as operators run it), collects its stdout
// (the stdout sink) and its JSON logs on stderr, and lets a test wait on a
// log event, /readyz, or exit, with deadlines. It also holds the read-back
// arithmetic every suite shares: missing, duplicates and order of the
// sequences read from a sink, and the checkpoint file.
//
// Data flow: aviso-server (avisotest or a container) -> aviso-bridge (the
// subprocess this package drives) -> sink -> the suites' readers -> Count.
package harness
