package supervisor

import (
	"fmt"
	"strings"

	"github.com/aviso-bridge/aviso-bridge/aviso"
)

// ConfigError is a failure that only a configuration change can fix
// (400/403/404/405, unknown event type, missing credentials). Setting says
// what to look at: fields of Config written in braces ("{Identifier} or
// {Start.FromDate}"), which the program that filled Config names to its
// operator (Check), and words.
type ConfigError struct {
	Setting string
	Err     error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("check %s: %v", e.Check(nil), e.Err)
}

// Check is Setting with each {Field} replaced by name(field); a nil name,
// or one that returns "", leaves the field's own name.
func (e *ConfigError) Check(name func(field string) string) string {
	var b strings.Builder
	rest := e.Setting
	for {
		before, after, ok := strings.Cut(rest, "{")
		field, tail, closed := strings.Cut(after, "}")
		if !ok || !closed {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(before)
		n := field
		if name != nil && name(field) != "" {
			n = name(field)
		}
		b.WriteString(n)
		rest = tail
	}
}

func (e *ConfigError) Unwrap() error { return e.Err }

// settingFor names the variable an operator should fix for a terminal HTTP
// status answered to req.
func (s *Supervisor) settingFor(he *aviso.HTTPError, req aviso.Request) string {
	switch {
	case he.Code == "UNKNOWN_EVENT_TYPE":
		return "{EventType}"
	case he.Status == 400:
		if named := s.settingFromMessage(he, req); named != "" {
			return named
		}
		switch {
		case req.FromDate != "" && req.FromDate == s.cfg.Start.FromDate:
			return "{Identifier} or {Start.FromDate}"
		case req.FromID != nil && s.cfg.Start.HasCheckpoint:
			return "{Identifier} (or the stored checkpoint)"
		case req.FromID != nil && s.cfg.Start.FromID != nil:
			return "{Identifier} or {Start.FromID}"
		}
		return "{Identifier} or {EventType}"
	case he.Status == 401:
		return "{Client.Credentials}"
	case he.Status == 403:
		return "{Client.Credentials} (this identity may not read the stream)"
	case he.Status == 413:
		return "{Identifier} (request body too large)"
	}
	return "{Client.BaseURL}"
}

// settingFromMessage names the variable to fix for a 400 answered to req
// from what the server's message says is wrong (departure 11): the replay
// end, the start position, or the identifier (aviso-server 0.13 rejects
// keys its schema does not know: "Unknown field 'severtiy' provided for
// watch operation"). "" when the message names none of them.
func (s *Supervisor) settingFromMessage(he *aviso.HTTPError, req aviso.Request) string {
	text := strings.ToLower(he.Message + " " + he.Details)
	var names []string
	if strings.Contains(text, "to_id") {
		if s.cfg.ToID != nil || req.ToID == nil {
			names = append(names, "{ToID}")
		} else {
			names = append(names, "{ToID} (the end of the replay was pinned from aviso-server's end_sequence)")
		}
	}
	if strings.Contains(text, "to_date") {
		names = append(names, "{ToDate}")
	}
	if strings.Contains(text, "from_id") {
		if s.cfg.Start.HasCheckpoint {
			names = append(names, "the stored checkpoint (aviso-bridge checkpoint get/set "+s.cfg.CheckpointName+")")
		} else {
			names = append(names, "{Start.FromID}")
		}
	}
	if strings.Contains(text, "from_date") {
		names = append(names, "{Start.FromDate}")
	}
	if len(names) > 0 {
		return strings.Join(names, " or ")
	}
	for _, hint := range []string{"unknown field '", "identifier", "polygon", "operator"} {
		if strings.Contains(text, hint) {
			return "{Identifier}"
		}
	}
	return ""
}

type serverErrorFrame struct {
	code    string
	message string
}

func (e *serverErrorFrame) Error() string {
	return fmt.Sprintf("aviso error frame %q: %s", e.code, e.message)
}
