package bench

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReceiverRecordsBodySizes(t *testing.T) {
	t.Parallel()
	rec, err := NewReceiver()
	require.NoError(t, err)
	t.Cleanup(func() { _ = rec.Close() })
	post := func(id, pad string) int {
		body := fmt.Sprintf(`{"data":{"before":%q,"after":{"id":%q,"t":%d}}}`, pad, id, time.Now().UnixNano())
		resp, err := http.Post(rec.URL+"/hook", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return len(body)
	}
	done := rec.Expect([]string{"x", "y"})
	small, big := post("x", ""), post("y", strings.Repeat("p", 1000))
	post("z", strings.Repeat("p", 5000)) // not expected: not counted
	post("x", strings.Repeat("p", 5000)) // a duplicate: not counted
	<-done
	smallest, largest := rec.BodySizes()
	require.Equal(t, small, smallest)
	require.Equal(t, big, largest)
	_, n, dups := rec.Latencies()
	require.Equal(t, 2, n)
	require.Equal(t, 1, dups)

	rec.Expect(nil)
	smallest, largest = rec.BodySizes()
	require.Equal(t, -1, smallest, "Expect resets the sizes")
	require.Zero(t, largest)
}
