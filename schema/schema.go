// Package schema holds the JSON Schemas of Triggerflow's two public
// formats, the webhook body receivers get (delivery.schema.json) and the
// trigger file (triggers.schema.json), and validates documents against
// them. The files are the published contract; docs/receivers.md and
// docs/triggers.md describe them.
//
// The trigger file schema is for editors and CI: it catches what a schema
// can express (unknown keys, types, names, URLs, durations). The loader in
// package trigger stays the authority and checks the rest.
package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// File names of the schemas, in this directory and as embedded.
const (
	DeliveryFile = "delivery.schema.json"
	TriggersFile = "triggers.schema.json"
)

// ErrInvalid is wrapped by every validation failure; the error text lists
// each failing location.
var ErrInvalid = errors.New("schema: document does not match")

//go:embed delivery.schema.json triggers.schema.json
var files embed.FS

// Delivery returns the webhook body schema.
func Delivery() []byte { return mustRead(DeliveryFile) }

// Triggers returns the trigger file schema.
func Triggers() []byte { return mustRead(TriggersFile) }

// ValidateDelivery checks a webhook body, byte for byte as received.
func ValidateDelivery(body []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: delivery is not JSON: %v", ErrInvalid, err)
	}
	return validate(compiled().delivery, DeliveryFile, doc)
}

// ValidateTriggerFile checks the content of a YAML or JSON trigger file.
func ValidateTriggerFile(data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%w: not YAML or JSON: %v", ErrInvalid, err)
	}
	doc, err := jsonValue(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return validate(compiled().triggers, TriggersFile, doc)
}

func validate(s *jsonschema.Schema, name string, doc any) error {
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%w %s: %v", ErrInvalid, name, err)
	}
	return nil
}

type schemas struct{ delivery, triggers *jsonschema.Schema }

// compiled panics on a schema that does not compile: the files are
// embedded, so that is a bug the package's tests catch.
var compiled = sync.OnceValue(func() schemas {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	compile := func(name string) *jsonschema.Schema {
		// A URN keeps the working directory out of error messages, which
		// a file name relative to it would bring in.
		url := "urn:triggerflow:" + name
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(mustRead(name)))
		if err == nil {
			err = c.AddResource(url, doc)
		}
		if err != nil {
			panic(fmt.Sprintf("schema: %s: %v", name, err))
		}
		s, err := c.Compile(url)
		if err != nil {
			panic(fmt.Sprintf("schema: %s: %v", name, err))
		}
		return s
	}
	return schemas{delivery: compile(DeliveryFile), triggers: compile(TriggersFile)}
})

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("schema: %s is not embedded: %v", name, err))
	}
	return b
}

// jsonValue turns a decoded YAML value into the JSON data model the
// validator takes: YAML also has non-string keys and timestamps, which a
// JSON document would carry as strings.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = j
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case float64:
		// .nan and .inf are YAML numbers but not JSON ones.
		if _, err := json.Marshal(v); err != nil {
			return nil, fmt.Errorf("%v is not a JSON number", v)
		}
		return v, nil
	}
	return v, nil
}
