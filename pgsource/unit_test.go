package pgsource

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/watcher"
)

func TestPositionRoundTripAndOrder(t *testing.T) {
	t.Parallel()
	p := position{commit: 0x16B3790, lsn: 0x16B3748, seq: 2}
	require.Equal(t, "00000000016B3790-00000000016B3748-00000002", p.String())
	got, err := parsePosition(p.String())
	require.NoError(t, err)
	require.Equal(t, p, got)

	// Byte-wise order of tokens is the order of positions, commit first:
	// a change with a smaller LSN in a later-committed transaction sorts
	// after one with a larger LSN committed earlier.
	ordered := []position{
		{},
		{commit: 0x100, lsn: 0x80},
		{commit: 0x100, lsn: 0x80, seq: 1},
		{commit: 0x100, lsn: 0x90},
		{commit: 0x200, lsn: 0x10},
		{commit: 0xA00, lsn: 0x10},
		{commit: 0xFFFFFFFFFFFFFFFF, lsn: 0xFFFFFFFFFFFFFFFF, seq: 0xFFFFFFFF},
	}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		require.Negative(t, a.compare(b))
		require.Less(t, a.String(), b.String())
	}

	bare, err := parsePosition("00000000016B3790")
	require.NoError(t, err)
	require.Equal(t, commitPosition(0x16B3790), bare)
	for _, lsn := range []string{"0/16B3790", "0/016B3790", "00000000/016B3790"} {
		got, err := parsePosition(lsn)
		require.NoError(t, err, lsn)
		require.Equal(t, commitPosition(0x16B3790), got, "PostgreSQL's X/Y notation: %s", lsn)
	}
	high, err := parsePosition("16/B374D848")
	require.NoError(t, err)
	require.Equal(t, commitPosition(0x16B374D848), high)

	zero, err := parsePosition("")
	require.NoError(t, err)
	require.Equal(t, position{}, zero)
}

func TestParsePositionRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"0/16b3748",
		"/16B3748",
		"0/",
		"1/2/3",
		"123456789/0",
		"0/123456789",
		"-1/0",
		"00000000016b3790", // lowercase
		"00000000016b3790-00000000016B3748-00000002", // lowercase: not canonical
		"00000000016B3790+00000000016B3748-00000002",
		"00000000016B379G-00000000016B3748-00000002",
		"00000000000000000001", // a docstore token
		strings.Repeat("F", 1000),
	} {
		_, err := parsePosition(s)
		require.ErrorIs(t, err, ErrInvalidPosition, s)
		require.ErrorIs(t, err, watcher.ErrInvalidPosition, s)
		require.ErrorContains(t, err, "CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS", "the error names the format")
	}
}

func TestSourceParsePosition(t *testing.T) {
	t.Parallel()
	var src Source // ParsePosition needs no connection
	for in, want := range map[string]string{
		"": "",
		"00000000016B3790-00000000016B3748-00000002": "00000000016B3790-00000000016B3748-00000002",
		"00000000016B3790":                           "00000000016B3790-0000000000000000-00000000",
		"0/16B3790":                                  "00000000016B3790-0000000000000000-00000000",
		"0/0":                                        "0000000000000000-0000000000000000-00000000",
	} {
		got, err := src.ParsePosition(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := src.ParsePosition("00000000000000000001")
	require.ErrorIs(t, err, watcher.ErrInvalidPosition, "a docstore token")
}

func FuzzParsePosition(f *testing.F) {
	f.Add("00000000016B3790-00000000016B3748-00000002")
	f.Add("00000000016B3790")
	f.Add("")
	f.Add("-")
	f.Add("16/B374D848")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePosition(s)
		if err != nil {
			return
		}
		// The canonical token is a fixed point.
		again, err := parsePosition(p.String())
		require.NoError(t, err)
		require.Equal(t, p, again)
		if len(s) == positionLen {
			// Every accepted full token is canonical.
			require.Equal(t, s, p.String())
		}
	})
}

func TestProgress(t *testing.T) {
	t.Parallel()
	pos := func(commit, lsn pglogrepl.LSN) position { return position{commit: commit, lsn: lsn} }

	t.Run("NothingHandedOutFollowsTheServer", func(t *testing.T) {
		g := &progress{base: 100}
		_, flush := g.status()
		require.EqualValues(t, 100, flush, "never below the slot's own position")
		require.True(t, g.caughtUp(150))
		_, flush = g.status()
		require.EqualValues(t, 150, flush)
	})

	t.Run("PartialConfirmStopsAtTheTransaction", func(t *testing.T) {
		g := &progress{base: 10}
		// T1 commits at 200 (ends 210) with changes at 100, 110.
		g.needed(pos(200, 100))
		g.needed(pos(200, 110))
		require.False(t, g.txnDone(pos(200, 110), true, 210))
		// T2 commits at 300 (ends 310) with changes at 220, 230.
		g.needed(pos(300, 220))
		g.needed(pos(300, 230))
		g.txnDone(pos(300, 230), true, 310)
		require.False(t, g.caughtUp(400), "unconfirmed changes hold the flush")

		require.True(t, g.confirm(pos(300, 220)))
		_, flush := g.status()
		require.EqualValues(t, 300, flush, "mid-transaction: up to the transaction's commit start, so it is sent again")

		require.True(t, g.confirm(pos(200, 110)) == false)
		_, flush = g.status()
		require.EqualValues(t, 300, flush, "never backwards")

		require.True(t, g.confirm(pos(300, 230)))
		_, flush = g.status()
		require.EqualValues(t, 400, flush, "all confirmed: up to the WAL read since")
	})

	t.Run("CompletedTransactionReleasedWhenItsLastChangeIsConfirmed", func(t *testing.T) {
		g := &progress{base: 10}
		g.needed(pos(200, 100))
		g.txnDone(pos(200, 100), true, 210)
		g.needed(pos(300, 220))
		g.txnDone(pos(300, 220), true, 310)
		g.confirm(pos(200, 100))
		_, flush := g.status()
		require.EqualValues(t, 210, flush)
	})

	t.Run("OpenTransactionIsNotReleased", func(t *testing.T) {
		g := &progress{base: 10}
		g.needed(pos(200, 100))
		g.txnDone(pos(200, 100), true, 210)
		g.needed(pos(300, 220)) // T2 open: no txnDone yet
		g.confirm(pos(300, 220))
		_, flush := g.status()
		require.EqualValues(t, 300, flush, "confirming T2's change releases what committed before T2, not T2")
	})

	t.Run("FilteredTransactionsReleasedOnlyOnceAllIsConfirmed", func(t *testing.T) {
		g := &progress{base: 10}
		g.needed(pos(200, 100))
		g.txnDone(pos(200, 100), true, 210)
		g.txnDone(position{}, false, 310) // another tenant's transaction
		_, flush := g.status()
		require.EqualValues(t, 10, flush)
		g.confirm(pos(200, 100))
		_, flush = g.status()
		require.EqualValues(t, 310, flush)
	})

	t.Run("ZeroFlushIsNotReported", func(t *testing.T) {
		g := &progress{}
		g.needed(pos(200, 100))
		_, flush := g.status()
		require.Zero(t, flush)
	})
}

func TestSlotName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "triggerflow_acme", SlotName("acme"))
	require.Equal(t, "triggerflow_acme_1", SlotName("acme_1"))
	a, b := SlotName("a-b"), SlotName("a_b")
	require.NotEqual(t, a, b, "sanitizing must not make two tenants share a slot")
	require.Regexp(t, `^triggerflow_a_b_[0-9a-f]{8}$`, a)
	long := SlotName(strings.Repeat("x", 100))
	require.Len(t, long, maxIdentifier)
	require.Regexp(t, slotPattern, long)
	require.NotEqual(t, long, SlotName(strings.Repeat("x", 101)))
	require.Regexp(t, slotPattern, SlotName("Ünïcode Tenant"))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{DSN: "postgres://u@localhost/db", Tenant: "acme"}.WithDefaults()
	require.NoError(t, good.Validate())
	require.Equal(t, "triggerflow", good.Publication)
	require.Equal(t, "triggerflow_acme", good.Slot)

	for name, c := range map[string]Config{
		"no DSN":           {Tenant: "acme"},
		"no tenant":        {DSN: "postgres://localhost/db"},
		"bad slot":         {DSN: "postgres://localhost/db", Tenant: "acme", Slot: "Bad-Slot"},
		"long publication": {DSN: "postgres://localhost/db", Tenant: "acme", Publication: strings.Repeat("p", 64)},
		"bad table":        {DSN: "postgres://localhost/db", Tenant: "acme", Tables: []string{"a.b.c"}},
		"bad backoff":      {DSN: "postgres://localhost/db", Tenant: "acme", ReconnectInitial: 10, ReconnectMax: 1},
	} {
		require.ErrorIs(t, c.WithDefaults().Validate(), ErrInvalidConfig, name)
	}
}

func TestConfigTenancy(t *testing.T) {
	t.Parallel()
	const dsn = "postgres://localhost/db"
	for name, tc := range map[string]struct {
		cfg              Config
		from, slot       string
		singleTenantSlot bool
	}{
		"single tenant, every row":   {cfg: Config{Tenant: "acme"}, slot: "triggerflow_acme"},
		"single tenant, column":      {cfg: Config{Tenant: "acme", TenantColumn: "org"}, from: TenantFromColumn, slot: "triggerflow_acme"},
		"single tenant, schema":      {cfg: Config{Tenant: "acme", TenantFrom: TenantFromSchema}, from: TenantFromSchema, slot: "triggerflow_acme"},
		"multi-tenant, column":       {cfg: Config{TenantColumn: "org"}, from: TenantFromColumn, slot: DefaultSlot},
		"multi-tenant, column named": {cfg: Config{TenantColumn: "org", TenantFrom: TenantFromColumn}, from: TenantFromColumn, slot: DefaultSlot},
		"multi-tenant, schema":       {cfg: Config{TenantFrom: TenantFromSchema}, from: TenantFromSchema, slot: DefaultSlot},
		"multi-tenant, own slot":     {cfg: Config{TenantColumn: "org", Slot: "eu_watcher"}, from: TenantFromColumn, slot: "eu_watcher"},
	} {
		tc.cfg.DSN = dsn
		c := tc.cfg.WithDefaults()
		require.NoError(t, c.Validate(), name)
		require.Equal(t, tc.from, c.TenantFrom, name)
		require.Equal(t, tc.slot, c.Slot, name)
	}

	for name, tc := range map[string]struct {
		cfg  Config
		says string
	}{
		"no tenant, no column":      {Config{}, "tenant is required"},
		"column mode without one":   {Config{TenantFrom: TenantFromColumn}, `TenantFrom "column" needs TenantColumn`},
		"schema mode with a column": {Config{TenantFrom: TenantFromSchema, TenantColumn: "org"}, `TenantColumn "org" conflicts with TenantFrom "schema"`},
		"public is no tenant":       {Config{Tenant: "public", TenantFrom: TenantFromSchema}, `tenant "public"`},
		"unknown TenantFrom":        {Config{TenantFrom: "row"}, `TenantFrom "row" must be "column" or "schema"`},
	} {
		tc.cfg.DSN = dsn
		err := tc.cfg.WithDefaults().Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		require.ErrorContains(t, err, tc.says, name)
	}
}

// TestTenantLookupDoesNotAllocate: in multi-tenant mode the tenant of
// every row is read from its tuple; a tenant seen before costs a map
// lookup, not a string. Not parallel: AllocsPerRun counts the whole
// process's allocations.
func TestTenantLookupDoesNotAllocate(t *testing.T) {
	m, err := newMetrics(nil)
	require.NoError(t, err)
	src := &Source{cfg: Config{TenantColumn: "tenant"}.WithDefaults(), metrics: m}
	d := &decoder{src: src}
	rel := &relation{collection: "orders", attrib: attribColumn, tenantCol: 1, cols: make([]column, 2), tenants: make(map[string]*tenantRef)}
	row := func(tenant string) *pglogrepl.TupleData {
		return &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
			{DataType: pglogrepl.TupleDataTypeText, Data: []byte("1")},
			{DataType: pglogrepl.TupleDataTypeText, Data: []byte(tenant)},
		}}
	}
	acme, globex := row("acme"), row("globex")
	first, sc := d.scope(rel, acme, false, nil)
	require.Equal(t, scopeIn, sc)
	require.Equal(t, "acme", first.name)
	_, _ = d.scope(rel, globex, false, nil)

	allocs := testing.AllocsPerRun(100, func() {
		ref, _ := d.scope(rel, acme, false, nil)
		ref.events.Inc()
		_, _ = d.scope(rel, globex, false, nil)
	})
	require.Zero(t, allocs)
	again, _ := d.scope(rel, acme, false, nil)
	require.Same(t, first, again)

	for _, null := range []*pglogrepl.TupleData{row(""), {Columns: []*pglogrepl.TupleDataColumn{{}, {DataType: pglogrepl.TupleDataTypeNull}}}} {
		ref, sc := d.scope(rel, null, false, nil)
		require.Nil(t, ref)
		require.Equal(t, scopeNull, sc)
	}
}

func TestScalarConverters(t *testing.T) {
	t.Parallel()
	cases := []struct {
		conv converter
		in   string
		want string
	}{
		{appendInteger, "-42", "-42"},
		{appendNumber, "12345678901234567890.000000000001", "12345678901234567890.000000000001"},
		{appendNumber, "1e+100", "1e+100"},
		{appendNumber, "NaN", `"NaN"`},
		{appendNumber, "-Infinity", `"-Infinity"`},
		{appendBool, "t", "true"},
		{appendBool, "f", "false"},
		{appendJSON, `{"a": [1, 2.50]}`, `{"a": [1, 2.50]}`},
		{appendString, "tab\there \"q\" \\ \x01 ü", `"tab\there \"q\" \\ \u0001 ü"`},
		{appendString, "bad \xff utf8", `"bad \ufffd utf8"`},
	}
	for _, c := range cases {
		got, err := c.conv(nil, []byte(c.in))
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, string(got), c.in)
	}
	for _, c := range []struct {
		conv converter
		in   string
	}{
		{appendInteger, "1.5"},
		{appendInteger, ""},
		{appendNumber, "abc"},
		{appendNumber, "1."},
		{appendBool, "true"},
		{appendJSON, "{"},
	} {
		_, err := c.conv(nil, []byte(c.in))
		require.Error(t, err, c.in)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\x1f\"\\\xff\u2028é")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := appendString(nil, []byte(s))
		require.NoError(t, err)
		require.True(t, json.Valid(out), "%q", out)
		var back string
		require.NoError(t, json.Unmarshal(out, &back))
		// Same reading as encoding/json: each invalid byte is one U+FFFD.
		std, _ := json.Marshal(s)
		var want string
		require.NoError(t, json.Unmarshal(std, &want))
		require.Equal(t, want, back)
	})
}

func FuzzIsJSONNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5e-7", "01", "1.", ".5", "1e", "-", "12345678901234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n json.Number
		std := json.Unmarshal([]byte(s), &n) == nil && string(n) == s
		require.Equal(t, std, isJSONNumber([]byte(s)), "%q", s)
	})
}

func TestArrayConverter(t *testing.T) {
	t.Parallel()
	c := newConverters(nil)
	for oid, cases := range map[uint32][][2]string{
		1007: { // int4[]
			{"{1,2,NULL}", "[1,2,null]"},
			{"{}", "[]"},
			{"{{1,2},{3,4}}", "[[1,2],[3,4]]"},
			{"[0:1]={5,6}", "[5,6]"},
		},
		1009: { // text[]
			{`{"a b","c\"d",NULL,"NULL"}`, `["a b","c\"d",null,"NULL"]`},
		},
		1182: { // date[]
			{"{2024-02-29,infinity}", `["2024-02-29","infinity"]`},
		},
	} {
		conv, err := c.forOID(t.Context(), oid)
		require.NoError(t, err)
		for _, tc := range cases {
			got, err := conv(nil, []byte(tc[0]))
			require.NoError(t, err, tc[0])
			require.Equal(t, tc[1], string(got), tc[0])
		}
	}
}
