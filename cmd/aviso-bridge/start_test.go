package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
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

// outcome: which error runBridge reports once the pipeline and the
// supervisor have returned.
func TestOutcome(t *testing.T) {
	pipeFail := errors.New("sink rejected notification permanently")
	supFail := errors.New("aviso: 401")
	supConfig := &supervisor.ConfigError{Err: errors.New("AVISO_EVENT_TYPE: unknown")}
	canceled := fmt.Errorf("watch: %w", context.Canceled)
	stopped := fmt.Errorf("submit: %w", bridge.ErrStopped)
	for _, tc := range []struct {
		name             string
		first, perr, ser error
		signalled        bool
		want             error // nil, or the error it must wrap
		config           bool  // a *ConfigError
	}{
		{"replay complete, committed", errReplayComplete, nil, nil, false, nil, false},
		{"replay complete, pipeline failed", errReplayComplete, pipeFail, nil, false, pipeFail, false},
		{"signal, drained", errSignalled, nil, canceled, true, nil, false},
		{"signal, pipeline cancelled", errSignalled, context.Canceled, canceled, true, nil, false},
		{"supervisor saw the signal first", canceled, nil, canceled, true, nil, false},
		{"signal, the supervisor saw the draining pipeline stop", errSignalled, nil, stopped, true, nil, false},
		{"supervisor failure", supFail, nil, supFail, false, supFail, false},
		{"supervisor config error", supConfig, nil, supConfig, false, supConfig, true},
		{"pipeline stopped: its error is the cause", stopped, pipeFail, stopped, false, pipeFail, false},
		{"pipeline first: the supervisor's error is ignored", errPipelineReturned, pipeFail, canceled, false, pipeFail, false},
		{"pipeline first without error", errPipelineReturned, nil, supFail, false, nil, false},
		{"supervisor failure wins over a pipeline failure it did not see", supFail, pipeFail, supFail, false, supFail, false},
	} {
		got := outcome(tc.first, tc.perr, tc.ser, tc.signalled)
		switch {
		case tc.want == nil && got != nil:
			t.Errorf("%s: %v, want nil", tc.name, got)
		case tc.want != nil && !errors.Is(got, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		var ce *ConfigError
		if errors.As(got, &ce) != tc.config {
			t.Errorf("%s: %v: ConfigError %v, want %v", tc.name, got, !tc.config, tc.config)
		}
	}
}
