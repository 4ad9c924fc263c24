package trigger

import "time"

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
	if l.MaxTenantLength == 0 {
		l.MaxTenantLength = d.MaxTenantLength
	}
	if l.MaxCollectionLength == 0 {
		l.MaxCollectionLength = d.MaxCollectionLength
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MinTimeout == 0 {
		l.MinTimeout = d.MinTimeout
	}
	if l.MaxTimeout == 0 {
		l.MaxTimeout = d.MaxTimeout
	}
	return l
}
