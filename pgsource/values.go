package pgsource

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// converter appends the JSON form of one column value, given in PostgreSQL
// text format, to dst.
type converter func(dst, text []byte) ([]byte, error)

// typeInfo is what the catalog says about a type the pgx type map does not
// know (domains, enums, extension and composite types, their arrays).
type typeInfo struct {
	typtype  byte   // b base, c composite, d domain, e enum, p pseudo, r range, m multirange
	category byte   // typcategory; 'A' for arrays
	base     uint32 // typbasetype of a domain
	elem     uint32 // typelem of an array
}

// typeLookup reads typeInfo for an OID from the catalog.
type typeLookup func(ctx context.Context, oid uint32) (typeInfo, error)

// converters maps column types to converters, using pgx's type map for the
// types it knows and the catalog for the rest. It is not safe for
// concurrent use; the decoder owns it.
type converters struct {
	m      *pgtype.Map
	lookup typeLookup
	cache  map[uint32]converter
}

func newConverters(lookup typeLookup) *converters {
	return &converters{m: pgtype.NewMap(), lookup: lookup, cache: make(map[uint32]converter)}
}

// maxTypeDepth bounds domain and array nesting when resolving a type.
const maxTypeDepth = 8

func (c *converters) forOID(ctx context.Context, oid uint32) (converter, error) {
	return c.resolve(ctx, oid, 0)
}

func (c *converters) resolve(ctx context.Context, oid uint32, depth int) (converter, error) {
	if conv, ok := c.cache[oid]; ok {
		return conv, nil
	}
	if depth > maxTypeDepth {
		return nil, fmt.Errorf("type %d: domains or arrays nested too deeply", oid)
	}
	conv, err := c.build(ctx, oid, depth)
	if err != nil {
		return nil, err
	}
	c.cache[oid] = conv
	return conv, nil
}

func (c *converters) build(ctx context.Context, oid uint32, depth int) (converter, error) {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return appendInteger, nil
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		return appendNumber, nil
	case pgtype.BoolOID:
		return appendBool, nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		return appendJSON, nil
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		return c.timestampConverter(oid), nil
	case pgtype.DateOID:
		return c.dateConverter(), nil
	case pgtype.ByteaOID:
		return c.byteaConverter(), nil
	}
	if t, ok := c.m.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok {
			elem, err := c.resolve(ctx, ac.ElementType.OID, depth+1)
			if err != nil {
				return nil, err
			}
			return c.arrayConverter(oid, elem), nil
		}
		// text, varchar, uuid, time, interval, inet, money, ...: their
		// text form is the most faithful JSON we can give.
		return appendString, nil
	}
	if c.lookup == nil {
		return appendString, nil
	}
	info, err := c.lookup(ctx, oid)
	if err != nil {
		return nil, fmt.Errorf("look up type %d: %w", oid, err)
	}
	switch {
	case info.typtype == 'd' && info.base != 0:
		return c.resolve(ctx, info.base, depth+1)
	case info.category == 'A' && info.elem != 0:
		elem, err := c.resolve(ctx, info.elem, depth+1)
		if err != nil {
			return nil, err
		}
		// Teach the map the array so it can parse it; elements are
		// scanned as their text form and converted by elem.
		c.m.RegisterType(&pgtype.Type{
			Name:  fmt.Sprintf("_%d", info.elem),
			OID:   oid,
			Codec: &pgtype.ArrayCodec{ElementType: &pgtype.Type{Name: fmt.Sprintf("t%d", info.elem), OID: info.elem, Codec: pgtype.TextCodec{}}},
		})
		return c.arrayConverter(oid, elem), nil
	default:
		// enums, composites, ranges, extension types: text.
		return appendString, nil
	}
}

func appendInteger(dst, text []byte) ([]byte, error) {
	if !isJSONNumber(text) || bytes.ContainsAny(text, ".eE") {
		return nil, fmt.Errorf("%q is not an integer", shortBytes(text))
	}
	return append(dst, text...), nil
}

// appendNumber keeps numeric's exact digits (a json.Number, never a float64
// round trip). NaN and ±Infinity have no JSON number form; they become the
// strings PostgreSQL prints.
func appendNumber(dst, text []byte) ([]byte, error) {
	if isJSONNumber(text) {
		return append(dst, text...), nil
	}
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return appendString(dst, text)
	}
	return nil, fmt.Errorf("%q is not a number", shortBytes(text))
}

func appendBool(dst, text []byte) ([]byte, error) {
	switch string(text) {
	case "t":
		return append(dst, "true"...), nil
	case "f":
		return append(dst, "false"...), nil
	}
	return nil, fmt.Errorf("%q is not a boolean", shortBytes(text))
}

func appendJSON(dst, text []byte) ([]byte, error) {
	if !json.Valid(text) {
		return nil, errors.New("value is not valid JSON")
	}
	return append(dst, text...), nil
}

// timestampConverter formats as RFC 3339 in UTC. A timestamp without time
// zone is taken to be UTC, the only reading that does not depend on the
// watcher's machine.
func (c *converters) timestampConverter(oid uint32) converter {
	t, _ := c.m.TypeForOID(oid)
	return func(dst, text []byte) ([]byte, error) {
		if s, ok := infinity(text); ok {
			return appendString(dst, []byte(s))
		}
		v, err := t.Codec.DecodeValue(c.m, oid, pgtype.TextFormatCode, text)
		if err != nil {
			return nil, err
		}
		ts, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("%q is not a finite timestamp", shortBytes(text))
		}
		if err := rfc3339Year(text, ts); err != nil {
			return nil, err
		}
		dst = append(dst, '"')
		dst = ts.UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), nil
	}
}

func (c *converters) dateConverter() converter {
	t, _ := c.m.TypeForOID(pgtype.DateOID)
	return func(dst, text []byte) ([]byte, error) {
		if s, ok := infinity(text); ok {
			return appendString(dst, []byte(s))
		}
		v, err := t.Codec.DecodeValue(c.m, pgtype.DateOID, pgtype.TextFormatCode, text)
		if err != nil {
			return nil, err
		}
		d, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("%q is not a finite date", shortBytes(text))
		}
		if err := rfc3339Year(text, d); err != nil {
			return nil, err
		}
		dst = append(dst, '"')
		dst = d.AppendFormat(dst, time.DateOnly)
		return append(dst, '"'), nil
	}
}

// infinity catches ±infinity, common sentinels RFC 3339 cannot spell; they
// stay strings in PostgreSQL's spelling.
func infinity(text []byte) (string, bool) {
	switch string(text) {
	case "infinity", "-infinity":
		return string(text), true
	}
	return "", false
}

// rfc3339Year rejects what RFC 3339 cannot represent: BC and five-digit
// years. Such a value is almost surely a data entry error, and a string
// that merely looks like a timestamp would mislead every comparison made
// with it downstream, so the change is reported as a problem instead.
func rfc3339Year(text []byte, t time.Time) error {
	if bytes.HasSuffix(text, []byte(" BC")) || t.Year() < 1 || t.Year() > 9999 {
		return fmt.Errorf("%q is outside RFC 3339's years 0001-9999", shortBytes(text))
	}
	return nil
}

func (c *converters) byteaConverter() converter {
	t, _ := c.m.TypeForOID(pgtype.ByteaOID)
	return func(dst, text []byte) ([]byte, error) {
		v, err := t.Codec.DecodeValue(c.m, pgtype.ByteaOID, pgtype.TextFormatCode, text)
		if err != nil {
			return nil, err
		}
		b, _ := v.([]byte)
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	}
}

// arrayConverter turns an array of any dimension into nested JSON arrays;
// lower bounds are dropped, NULL elements become null.
func (c *converters) arrayConverter(oid uint32, elem converter) converter {
	return func(dst, text []byte) ([]byte, error) {
		var a pgtype.Array[*string]
		if err := c.m.Scan(oid, pgtype.TextFormatCode, text, &a); err != nil {
			return nil, err
		}
		if len(a.Dims) == 0 {
			return append(dst, "[]"...), nil
		}
		var err error
		i := 0
		dst, err = appendDim(dst, &a, 0, &i, elem)
		return dst, err
	}
}

func appendDim(dst []byte, a *pgtype.Array[*string], dim int, i *int, elem converter) ([]byte, error) {
	dst = append(dst, '[')
	for n := range int(a.Dims[dim].Length) {
		if n > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dim+1 < len(a.Dims) {
			dst, err = appendDim(dst, a, dim+1, i, elem)
		} else {
			e := a.Elements[*i]
			*i++
			if e == nil {
				dst = append(dst, "null"...)
			} else {
				dst, err = elem(dst, []byte(*e))
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// isJSONNumber reports whether b matches the JSON number grammar.
func isJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i == len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// appendString appends text as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does; PostgreSQL databases are normally UTF-8 anyway.
func appendString(dst, text []byte) ([]byte, error) {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(text); {
		b := text[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, text[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, text[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, text[start:]...)
	return append(dst, '"'), nil
}

func shortBytes(b []byte) string { return shorten(string(b)) }

// keyText is the docKey form of one key column's JSON value: a string's
// content, else the JSON text itself (42, true).
func keyText(v []byte) (string, error) {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	return string(bytes.Clone(v)), nil
}
