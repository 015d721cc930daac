// Package e2ebench measures aviso-bridge end to end: the SSE decoder, the
// whole chain into JetStream and into Kafka next to a bare client of the
// same broker, the live latency from aviso's send to the sink's
// acknowledgement, and the peak RSS of the built binary.
//
// Data flow measured: avisotest (aviso-server, in process) -> aviso (SSE
// bytes) -> supervisor -> bridge pipeline -> sink (embedded nats-server with
// JetStream, or kfake) -> checkpoint store, wired with the same constructors
// and settings as cmd/aviso-bridge's runBridge at its defaults.
//
// Each runner (Decode, JetStream, Kafka, Discard, Latency, Binary) starts its own
// servers, runs one measurement, checks that every notification arrived,
// stops everything and returns a result struct. They are used by the
// benchmarks of this package (go test -bench, with b.ReportMetric) and by
// cmd/aviso-bench, which prints one markdown table. Setup (servers,
// pre-published notifications, sink and store creation) is never timed.
// A runner never judges speed: the ratios are for people to read.
//
// Everything shares the machine's cores (server, bridge and broker in one
// process), so rates are lower bounds; compare bridge and baseline of the
// same run, which alternate in rounds so that neither gets a quiet moment
// of a shared machine alone.
package e2ebench
