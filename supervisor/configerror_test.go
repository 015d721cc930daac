package supervisor_test

import (
	"errors"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// A ConfigError names Config fields; Check lets the program that filled
// Config name them its own way, Error names them as fields.
func TestConfigErrorCheck(t *testing.T) {
	e := &supervisor.ConfigError{Setting: "{Identifier} or {Start.FromDate} (or the stored checkpoint)", Err: errors.New("400")}
	if got, want := e.Error(), "check Identifier or Start.FromDate (or the stored checkpoint): 400"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	name := func(f string) string { return map[string]string{"Identifier": "ID_VAR"}[f] }
	if got, want := e.Check(name), "ID_VAR or Start.FromDate (or the stored checkpoint)"; got != want {
		t.Errorf("Check = %q, want %q", got, want)
	}
	if got := (&supervisor.ConfigError{Setting: "words only {unclosed"}).Check(name); got != "words only {unclosed" {
		t.Errorf("Check of a setting without fields = %q", got)
	}
}
