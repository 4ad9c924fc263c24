package pgsource

import (
	"cmp"
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

	"github.com/triggerflow/triggerflow/tenantlabel"
)

// Config configures a Source.
type Config struct {
	// DSN connects to the database whose changes are watched, as a URL or
	// key=value string. Required. The role needs the REPLICATION attribute
	// (or superuser), CREATE on the database the first time (publication,
	// checkpoint table), and, for a FOR ALL TABLES publication, superuser.
	DSN string
	// Tenant, when set, is the one tenant the source reports (single-tenant
	// mode): every change is reported for it, or, with TenantColumn or
	// TenantFrom "schema", only its own rows. Empty means multi-tenant
	// mode: every tenant's rows are reported, each with the tenant read
	// from the row, which needs TenantColumn or TenantFrom "schema". The
	// watcher then keeps the tenants it serves and skips the others.
	Tenant string
	// TenantColumn names the column holding a row's tenant (compared and
	// reported as PostgreSQL prints it). Tables without the column are not
	// reported, nor are rows whose column is NULL. Deletes need the column
	// in the old row: REPLICA IDENTITY FULL, or the column in the primary
	// key.
	TenantColumn string
	// TenantFrom says where a row's tenant is: TenantFromColumn (the
	// default when TenantColumn is set) or TenantFromSchema (a schema per
	// tenant: the tenant is the table's schema and Collection the bare
	// table name; tables in the public schema belong to no tenant).
	TenantFrom string
	// Publication names the publication to stream. Created when absent
	// (FOR ALL TABLES, or FOR TABLE Tables); an existing one is used as
	// is. Defaults to "triggerflow". At most 63 bytes.
	Publication string
	// Slot names the persistent logical replication slot. Created when
	// absent. In multi-tenant mode it defaults to "triggerflow": one slot
	// serves every tenant, so two multi-tenant sources on one database
	// need distinct names. In single-tenant mode it defaults to
	// "triggerflow_<tenant>" lowercased with other characters than
	// [a-z0-9_] replaced by '_'; when that changed the tenant name or had
	// to be cut to 63 bytes, a hash of the tenant is appended so two
	// tenants never share a slot.
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
	// TenantLabels bounds the tenant label values of the metrics in
	// multi-tenant mode; nil names every tenant. Single-tenant mode labels
	// with Tenant.
	TenantLabels *tenantlabel.Guard
}

// Values of Config.TenantFrom.
const (
	TenantFromColumn = "column"
	TenantFromSchema = "schema"
)

// publicSchema holds no tenant's data under TenantFromSchema: it is where
// tables land by default, so it usually holds the application's shared
// tables, and reporting them for a tenant named "public" would surprise.
const publicSchema = "public"

// Defaults.
const (
	DefaultPublication = "triggerflow"
	// DefaultSlot is the slot of a multi-tenant source.
	DefaultSlot             = "triggerflow"
	DefaultStandbyTimeout   = 10 * time.Second
	DefaultReconnectInitial = 100 * time.Millisecond
	DefaultReconnectMax     = 10 * time.Second
)

// maxIdentifier is PostgreSQL's NAMEDATALEN-1.
const maxIdentifier = 63

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Publication = cmp.Or(c.Publication, DefaultPublication)
	if c.TenantFrom == "" && c.TenantColumn != "" {
		c.TenantFrom = TenantFromColumn
	}
	if c.Slot == "" {
		if c.Tenant != "" {
			c.Slot = SlotName(c.Tenant)
		} else {
			c.Slot = DefaultSlot
		}
	}
	c.StandbyTimeout = cmp.Or(c.StandbyTimeout, DefaultStandbyTimeout)
	c.ReconnectInitial = cmp.Or(c.ReconnectInitial, DefaultReconnectInitial)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, DefaultReconnectMax)
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
	errs = append(errs, c.validateTenancy()...)
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

func (c Config) validateTenancy() []error {
	var errs []error
	switch c.TenantFrom {
	case "":
		if c.Tenant == "" {
			errs = append(errs, errors.New(`tenant is required unless TenantColumn is set or TenantFrom is "schema" (multi-tenant mode)`))
		}
	case TenantFromColumn:
		if c.TenantColumn == "" {
			errs = append(errs, errors.New(`TenantFrom "column" needs TenantColumn`))
		}
	case TenantFromSchema:
		if c.TenantColumn != "" {
			errs = append(errs, fmt.Errorf(`TenantColumn %q conflicts with TenantFrom "schema": the tenant is the table's schema`, c.TenantColumn))
		}
		if c.Tenant == publicSchema {
			errs = append(errs, fmt.Errorf(`tenant %q with TenantFrom "schema": the public schema holds no tenant's data`, c.Tenant))
		}
	default:
		errs = append(errs, fmt.Errorf(`TenantFrom %q must be "column" or "schema"`, c.TenantFrom))
	}
	return errs
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
