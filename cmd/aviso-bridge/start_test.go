package main

import (
	"reflect"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

func seq(n uint64) *uint64 { return &n }

func TestResolveStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   startInputs
		want startPlan
	}{
		{"nothing: live", startInputs{}, startPlan{}},
		{"from id", startInputs{FromID: seq(5)}, startPlan{Start: supervisor.Start{FromID: seq(5)}}},
		{"from date", startInputs{FromDate: "2026-01-01T00:00:00Z"}, startPlan{Start: supervisor.Start{FromDate: "2026-01-01T00:00:00Z"}}},
		{"checkpoint", startInputs{Checkpoint: seq(7)}, startPlan{Start: supervisor.Start{Checkpoint: 7, HasCheckpoint: true}}},
		{"checkpoint 0", startInputs{Checkpoint: seq(0)}, startPlan{Start: supervisor.Start{Checkpoint: 0, HasCheckpoint: true}}},
		{"checkpoint wins over from", startInputs{Checkpoint: seq(7), FromID: seq(2), FromDate: ""},
			startPlan{Start: supervisor.Start{Checkpoint: 7, HasCheckpoint: true}, FromIgnored: true}},
		{"checkpoint wins over from date", startInputs{Checkpoint: seq(7), FromDate: "2026-01-01"},
			startPlan{Start: supervisor.Start{Checkpoint: 7, HasCheckpoint: true}, FromIgnored: true}},
		{"sink ahead of checkpoint", startInputs{Checkpoint: seq(7), Stored: seq(9)},
			startPlan{Start: supervisor.Start{Checkpoint: 9, HasCheckpoint: true}, SinkAhead: true}},
		{"sink behind checkpoint", startInputs{Checkpoint: seq(7), Stored: seq(3)},
			startPlan{Start: supervisor.Start{Checkpoint: 7, HasCheckpoint: true}}},
		{"sink equal to checkpoint", startInputs{Checkpoint: seq(7), Stored: seq(7)},
			startPlan{Start: supervisor.Start{Checkpoint: 7, HasCheckpoint: true}}},
		{"sink without checkpoint beats from", startInputs{Stored: seq(4), FromID: seq(1)},
			startPlan{Start: supervisor.Start{Checkpoint: 4, HasCheckpoint: true}, SinkAhead: true, FromIgnored: true}},
	} {
		if got := resolveStart(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestResumeAfter(t *testing.T) {
	for _, tc := range []struct {
		name           string
		checkpoint, id *uint64
		want           uint64
	}{
		{"nothing", nil, nil, 0},
		{"checkpoint", seq(41), seq(3), 41},
		{"from id", nil, seq(10), 9},
		{"from id 0", nil, seq(0), 0},
	} {
		if got := resumeAfter(tc.checkpoint, tc.id); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
