package pgsource

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Source.
type Config struct {
	// DSN connects to the database whose changes are watched, as a URL or
	// key=value string. Required. The role needs the REPLICATION attribute
	// (or superuser), CREATE on the database the first time (publication,
	// checkpoint table), and, for a FOR ALL TABLES publication, superuser.
	DSN string
	// Tenant is the tenant every change is reported for. Required.
	Tenant string
	// TenantColumn, when set, reports only rows whose value in this column
	// is Tenant (compared as PostgreSQL prints it). Tables without the
	// column are not reported. Deletes need the column in the old row:
	// REPLICA IDENTITY FULL, or the column in the primary key.
	TenantColumn string
	// Publication names the publication to stream. Created when absent
	// (FOR ALL TABLES, or FOR TABLE Tables); an existing one is used as
	// is. Defaults to "triggerflow". At most 63 bytes.
	Publication string
	// Slot names the persistent logical replication slot. Created when
	// absent. Defaults to "triggerflow_<tenant>" lowercased with other
	// characters than [a-z0-9_] replaced by '_'; when that changed the
	// tenant name or had to be cut to 63 bytes, a hash of the tenant is
	// appended so two tenants never share a slot.
	Slot string
	// Tables lists the tables of a publication created here, as "name",
	// "schema.name" or "schema/name". Empty means FOR ALL TABLES.
	Tables []string
	// StandbyTimeout is the longest time between two standby status
	// updates sent to the server; keep it well under the server's
	// wal_sender_timeout (60s by default). Defaults to 10s.
	StandbyTimeout time.Duration
	// ReconnectInitial and ReconnectMax space the reconnects Watch makes
	// after losing the connection, doubling from the first to the second.
	// Default to 100ms and 10s.
	ReconnectInitial, ReconnectMax time.Duration

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// Logger receives reconnects and decoding problems; nil discards.
	Logger *slog.Logger
	// Registerer receives the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	DefaultPublication      = "triggerflow"
	DefaultStandbyTimeout   = 10 * time.Second
	DefaultReconnectInitial = 100 * time.Millisecond
	DefaultReconnectMax     = 10 * time.Second
)

// maxIdentifier is PostgreSQL's NAMEDATALEN-1.
const maxIdentifier = 63

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Publication == "" {
		c.Publication = DefaultPublication
	}
	if c.Slot == "" && c.Tenant != "" {
		c.Slot = SlotName(c.Tenant)
	}
	if c.StandbyTimeout == 0 {
		c.StandbyTimeout = DefaultStandbyTimeout
	}
	if c.ReconnectInitial == 0 {
		c.ReconnectInitial = DefaultReconnectInitial
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

var slotPattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate reports every problem of a defaulted config.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("DSN is required"))
	} else if _, err := pgconn.ParseConfig(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("DSN: %w", err))
	}
	if c.Tenant == "" {
		errs = append(errs, errors.New("tenant is required"))
	}
	if !slotPattern.MatchString(c.Slot) {
		errs = append(errs, fmt.Errorf("slot %q must match [a-z0-9_]{1,63}", c.Slot))
	}
	if c.Publication == "" || len(c.Publication) > maxIdentifier || strings.IndexByte(c.Publication, 0) >= 0 {
		errs = append(errs, fmt.Errorf("publication %q must be 1 to 63 bytes without NUL", c.Publication))
	}
	for _, t := range c.Tables {
		if _, err := tableIdentifier(t); err != nil {
			errs = append(errs, err)
		}
	}
	if c.StandbyTimeout <= 0 || c.ReconnectInitial <= 0 || c.ReconnectMax < c.ReconnectInitial {
		errs = append(errs, errors.New("StandbyTimeout and ReconnectInitial must be positive and ReconnectMax at least ReconnectInitial"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// SlotName is the default slot name of a tenant.
func SlotName(tenant string) string {
	var b strings.Builder
	b.WriteString("triggerflow_")
	for _, r := range strings.ToLower(tenant) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "triggerflow_"+tenant && len(name) <= maxIdentifier {
		return name
	}
	sum := sha256.Sum256([]byte(tenant))
	suffix := "_" + hex.EncodeToString(sum[:4])
	return name[:min(len(name), maxIdentifier-len(suffix))] + suffix
}

// tableIdentifier splits "schema.name", "schema/name" or "name".
func tableIdentifier(t string) ([]string, error) {
	parts := strings.FieldsFunc(t, func(r rune) bool { return r == '.' || r == '/' })
	if len(parts) == 0 || len(parts) > 2 || strings.Count(t, ".")+strings.Count(t, "/") != len(parts)-1 {
		return nil, fmt.Errorf("table %q must be name, schema.name or schema/name", t)
	}
	for _, p := range parts {
		if len(p) > maxIdentifier {
			return nil, fmt.Errorf("table %q: %q is longer than 63 bytes", t, p)
		}
	}
	return parts, nil
}
