package supervisor

import (
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// convert is Convert of a notification received now by this supervisor's
// listener (Config.Listener).
func (s *Supervisor) convert(an *aviso.Notification) bridge.Notification {
	n := Convert(an, s.cfg.Clock.Now())
	n.Listener = s.cfg.Listener
	return n
}

// Convert turns a decoded aviso notification into the bridge's, received at
// received. The byte slices alias an's (the frame's own copy of the event).
// Listener stays empty: a Supervisor sets its Config.Listener.
func Convert(an *aviso.Notification, received time.Time) bridge.Notification {
	n := bridge.Notification{
		EventType:       an.EventType,
		Sequence:        an.Sequence,
		ID:              an.ID,
		Source:          an.Source,
		Type:            an.Type,
		DataSchema:      an.DataSchema,
		DataContentType: an.DataContentType,
		TimeRaw:         an.Time,
		Identifier:      an.Identifier,
		Data:            an.Data,
		CloudEvent:      an.CloudEvent,
		Received:        received,
	}
	if an.Time != "" {
		if t, err := time.Parse(time.RFC3339Nano, an.Time); err == nil {
			n.Time = t
		}
	}
	return n
}
