package main

import (
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// startInputs is everything that decides where the stream starts.
type startInputs struct {
	// Checkpoint is the committed sequence loaded from the store (nil: none).
	Checkpoint *uint64
	// Stored is the last sequence the sink reports holding (nil: unknown or
	// the sink does not tell).
	Stored *uint64
	// FromID and FromDate are AVISO_FROM_ID and AVISO_FROM_DATE.
	FromID   *uint64
	FromDate string
}

// startPlan is where the stream starts, and why.
type startPlan struct {
	Start supervisor.Start
	// SinkAhead: the sink holds a later sequence than the checkpoint, and
	// the stream resumes after it.
	SinkAhead bool
	// FromIgnored: AVISO_FROM_* is set but a position wins over it.
	FromIgnored bool
}

// resolveStart decides where the stream starts: after the checkpoint, or
// after the sink's stored position when that is later; with neither, at
// AVISO_FROM_ID or AVISO_FROM_DATE (or live).
func resolveStart(in startInputs) startPlan {
	var p startPlan
	if in.Checkpoint != nil {
		p.Start.Checkpoint, p.Start.HasCheckpoint = *in.Checkpoint, true
	}
	if in.Stored != nil && (!p.Start.HasCheckpoint || *in.Stored > p.Start.Checkpoint) {
		p.Start.Checkpoint, p.Start.HasCheckpoint = *in.Stored, true
		p.SinkAhead = true
	}
	if !p.Start.HasCheckpoint {
		p.Start.FromID, p.Start.FromDate = in.FromID, in.FromDate
		return p
	}
	p.FromIgnored = in.FromID != nil || in.FromDate != ""
	return p
}

// resumeAfter is the sequence a run resumes after, before the sink is
// asked: the checkpoint, else AVISO_FROM_ID - 1, else 0 (unknown). The
// Kafka sink's start-up scan reads back at least that far.
func resumeAfter(checkpoint, fromID *uint64) uint64 {
	switch {
	case checkpoint != nil:
		return *checkpoint
	case fromID != nil && *fromID > 0:
		return *fromID - 1
	}
	return 0
}
