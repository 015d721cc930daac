package kafka

import (
	"slices"
	"testing"
)

func TestPlaintextSASLBrokers(t *testing.T) {
	remote := []string{"kafka-1.example:9092", "127.0.0.1:9092", "10.0.0.7:9092", "localhost:9092", "[::1]:9092"}
	tests := []struct {
		name string
		c    Config
		want []string
	}{
		{"PLAIN without TLS", Config{Brokers: remote, SASLMechanism: "PLAIN", Username: "u", Password: "p"},
			[]string{"kafka-1.example:9092", "10.0.0.7:9092"}},
		{"plain in lower case", Config{Brokers: []string{"k.example:9092"}, SASLMechanism: " plain "}, []string{"k.example:9092"}},
		{"comma-separated entry", Config{Brokers: []string{"a.example:9092,127.0.0.1:9093"}, SASLMechanism: "PLAIN"}, []string{"a.example:9092"}},
		{"loopback only", Config{Brokers: []string{"127.0.0.1:9092", "localhost:9093"}, SASLMechanism: "PLAIN"}, nil},
		{"PLAIN with KAFKA_TLS", Config{Brokers: remote, SASLMechanism: "PLAIN", TLS: true}, nil},
		{"PLAIN with a CA file (implies TLS)", Config{Brokers: remote, SASLMechanism: "PLAIN", TLSCAFile: "/ca.pem"}, nil},
		{"SCRAM sends no password", Config{Brokers: remote, SASLMechanism: "SCRAM-SHA-512"}, nil},
		{"no SASL", Config{Brokers: remote}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.PlaintextSASLBrokers(); !slices.Equal(got, tt.want) {
				t.Fatalf("PlaintextSASLBrokers = %q, want %q", got, tt.want)
			}
		})
	}
}
