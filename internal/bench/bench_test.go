package bench

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
)

// defaults returns the options as the command line leaves them.
func defaults(t *testing.T, args ...string) Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o.RegisterFlags(fs)
	require.NoError(t, fs.Parse(args))
	return o
}

func TestOptionsCheck(t *testing.T) {
	t.Parallel()
	sweep, err := defaults(t).check()
	require.NoError(t, err)
	require.Equal(t, []float64{0.25, 0.125}, sweep)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-only", "a,x"}, `-only: unknown row "x"`},
		{[]string{"-only", "tc", "-profile", "p"}, "include th or tenants in -only"},
		{[]string{"-tenants", "0"}, "-tenants and -tenant-changes must be at least 1"},
		{[]string{"-sweep", "0.5,2"}, `-sweep: "2" is not a fraction`},
		{[]string{"-sweep", "0.5,0.4,0.3,0.2"}, "-sweep: at most 3 rates"},
		{[]string{"-soak", "1m", "-soak-rate", "0"}, "-soak needs -soak-rate above 0"},
		{[]string{"-profile-seconds", "0"}, "-profile-seconds must be at least 1"},
		{[]string{"-only", "tli", "-large-doc-bytes", "600000"}, "-large-doc-bytes must be from"},
		{[]string{"-large-doc-bytes", "4096"}, "-large-doc-bytes must be from"},
	} {
		_, err := defaults(t, c.args...).check()
		require.ErrorContains(t, err, c.want, "%v", c.args)
	}
}

func TestOptionsWant(t *testing.T) {
	t.Parallel()
	all := defaults(t)
	for _, k := range RowKeys {
		require.True(t, all.want(k), k)
	}
	only := defaults(t, "-only", "a,th")
	require.True(t, only.want("th"))
	require.False(t, only.want("tc"))
	require.False(t, defaults(t, "-postgres=false").want("pc"), "no PostgreSQL rows without PostgreSQL")
	require.False(t, defaults(t, "-soak", "1m").want("a"), "a soak measures no rows")
	tenants := defaults(t, "-only", "tenants")
	require.True(t, tenants.want("tenants"))
	require.False(t, tenants.wantAny(temporalRows), "the tenants row alone needs no Temporal")
	require.True(t, defaults(t, "-only", "tenants,a").wantAny(temporalRows))
	require.True(t, defaults(t, "-only", "tl").wantAny(temporalRows), "the large rows need Temporal")
	_, err := defaults(t, "-only", "tc", "-large-doc-bytes", "1").check()
	require.NoError(t, err, "the document size matters only to tl and tli")
}
