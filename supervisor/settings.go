package supervisor

import (
	"strings"

	"github.com/aviso-bridge/aviso-bridge/aviso"
)

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
