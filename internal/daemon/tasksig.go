package daemon

import (
	"fmt"

	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/tasksig"
)

// taskSigner loads the watcher's task signing key; nil when the file
// names none, so that tasks go unsigned.
func taskSigner(path string) (engine.TaskSigner, error) {
	if path == "" {
		return nil, nil
	}
	s, err := tasksig.LoadSigner(path)
	if err != nil {
		return nil, fmt.Errorf("publisher.signingKeyFile: %w", err)
	}
	return s, nil
}

// taskVerifier loads the verification keys of ingest or the worker; nil
// when field names no file, so that every task is trusted.
func taskVerifier(field, path string) (engine.TaskVerifier, error) {
	if path == "" {
		return nil, nil
	}
	v, err := tasksig.LoadVerifier(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return v, nil
}
