package integration

import (
	"errors"
	"io/fs"
	"os"
)

// readFileIfExists returns nil, nil when path does not exist.
func readFileIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
