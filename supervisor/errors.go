package supervisor

import (
	"fmt"
	"strings"

	"github.com/aviso-bridge/aviso-bridge/aviso"
)

// ConfigError is a failure that only a configuration change can fix
// (400/403/404/405, unknown event type, missing credentials). Setting names
// the environment variable to look at.
type ConfigError struct {
	Setting string
	Err     error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("check %s: %v", e.Setting, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// settingFor names the variable an operator should fix for a terminal HTTP
// status answered to req.
func (s *Supervisor) settingFor(he *aviso.HTTPError, req aviso.Request) string {
	switch {
	case he.Code == "UNKNOWN_EVENT_TYPE":
		return "AVISO_EVENT_TYPE"
	case he.Status == 400:
		if named := s.settingFromMessage(he, req); named != "" {
			return named
		}
		switch {
		case req.FromDate != "" && req.FromDate == s.cfg.Start.FromDate:
			return "AVISO_IDENTIFIER or AVISO_FROM_DATE"
		case req.FromID != nil && s.cfg.Start.HasCheckpoint:
			return "AVISO_IDENTIFIER (or the stored checkpoint, CHECKPOINT_*)"
		case req.FromID != nil && s.cfg.Start.FromID != nil:
			return "AVISO_IDENTIFIER or AVISO_FROM_ID"
		}
		return "AVISO_IDENTIFIER or AVISO_EVENT_TYPE"
	case he.Status == 401:
		return "AVISO_TOKEN, AVISO_TOKEN_FILE or AVISO_USERNAME/AVISO_PASSWORD"
	case he.Status == 403:
		return "AVISO_TOKEN/AVISO_TOKEN_FILE or AVISO_USERNAME (this identity may not read the stream)"
	case he.Status == 413:
		return "AVISO_IDENTIFIER (request body too large)"
	}
	return "AVISO_URL"
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
			names = append(names, "AVISO_TO_ID")
		} else {
			names = append(names, "AVISO_TO_ID (the end of the replay was pinned from aviso-server's end_sequence)")
		}
	}
	if strings.Contains(text, "to_date") {
		names = append(names, "AVISO_TO_DATE")
	}
	if strings.Contains(text, "from_id") {
		if s.cfg.Start.HasCheckpoint {
			names = append(names, "the stored checkpoint (aviso-bridge checkpoint get/set "+s.cfg.CheckpointName+")")
		} else {
			names = append(names, "AVISO_FROM_ID")
		}
	}
	if strings.Contains(text, "from_date") {
		names = append(names, "AVISO_FROM_DATE")
	}
	if len(names) > 0 {
		return strings.Join(names, " or ")
	}
	for _, hint := range []string{"unknown field '", "identifier", "polygon", "operator"} {
		if strings.Contains(text, hint) {
			return "AVISO_IDENTIFIER"
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
