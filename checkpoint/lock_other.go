//go:build !unix

package checkpoint

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

func lockFile(*os.File) error {
	return errors.New("the file checkpoint store needs flock (unix only)")
}
