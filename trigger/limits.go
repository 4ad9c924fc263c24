package trigger

import (
	"cmp"
	"time"
)

// Limits bounds what a trigger may contain. The zero value is not useful;
// start from DefaultLimits.
type Limits struct {
	// MaxTenantLength caps tenant names. Defaults to 128.
	MaxTenantLength int `json:"maxTenantLength" yaml:"maxTenantLength"`
	// MaxCollectionLength caps collection paths and globs. Defaults to 128.
	MaxCollectionLength int `json:"maxCollectionLength" yaml:"maxCollectionLength"`
	// MaxHeaderBytes caps the summed size of a trigger's header names and
	// values. Defaults to 16 KiB.
	MaxHeaderBytes int `json:"maxHeaderBytes" yaml:"maxHeaderBytes"`
	// MinTimeout is the shortest delivery timeout a trigger may set.
	// Defaults to 100ms.
	MinTimeout Duration `json:"minTimeout" yaml:"minTimeout"`
	// MaxTimeout is the longest delivery timeout a trigger may set.
	// Defaults to 5m.
	MaxTimeout Duration `json:"maxTimeout" yaml:"maxTimeout"`
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxTenantLength:     128,
		MaxCollectionLength: 128,
		MaxHeaderBytes:      16 << 10,
		MinTimeout:          Duration(100 * time.Millisecond),
		MaxTimeout:          Duration(5 * time.Minute),
	}
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	l.MaxTenantLength = cmp.Or(l.MaxTenantLength, d.MaxTenantLength)
	l.MaxCollectionLength = cmp.Or(l.MaxCollectionLength, d.MaxCollectionLength)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, d.MaxHeaderBytes)
	l.MinTimeout = cmp.Or(l.MinTimeout, d.MinTimeout)
	l.MaxTimeout = cmp.Or(l.MaxTimeout, d.MaxTimeout)
	return l
}
