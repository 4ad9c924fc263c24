package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
)

// fakeTB records how a harness helper ends a test. Like the real ones, its
// Skipf and Fatalf end the calling goroutine, so a helper that went on
// after deciding shows up as a second call or as having returned.
type fakeTB struct {
	testing.TB // nil: any method not overridden here panics

	mu     sync.Mutex
	skips  []string
	fatals []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skips = append(f.skips, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

// outcome is what a helper did to a fake test.
type outcome struct {
	skips, fatals []string
	returned      bool // the helper returned instead of ending the test
}

// runHelper calls helper with a fake test on its own goroutine, as the
// testing package runs a test, and reports how it ended.
func runHelper(helper func(testing.TB)) outcome {
	f := &fakeTB{}
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		helper(f)
		o.returned = true
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	o.skips, o.fatals = f.skips, f.fatals
	return o
}

// setCI sets CI for the rest of the test; unset removes it altogether.
func setCI(t *testing.T, value string, unset bool) {
	t.Helper()
	t.Setenv("CI", value) // restores the original on cleanup
	if unset {
		require.NoError(t, os.Unsetenv("CI"))
	}
}

// TestHarnessRule checks the rule every machine-dependent skip follows: a
// missing tool or capability skips the test locally and fails it when
// CI=true, and either way the test ends there.
func TestHarnessRule(t *testing.T) {
	// Not parallel: t.Setenv changes the process environment.
	missing := filepath.Join(t.TempDir(), "no-such-tool")
	helpers := map[string]struct {
		call func(testing.TB)
		says []string // the message names what is missing and why
	}{
		"Unavailable": {
			call: func(tb testing.TB) { testenv.Unavailable(tb, "IPv6 loopback", "listen tcp6 [::1]:0: no address") },
			says: []string{"IPv6 loopback", "listen tcp6 [::1]:0: no address"},
		},
		"MissingTool": {
			call: func(tb testing.TB) {
				testenv.MissingTool(tb, "initdb", "not found on PATH", "apt-get install postgresql")
			},
			says: []string{"initdb", "not found on PATH", "apt-get install postgresql"},
		},
		"RequireTool/not on PATH": {
			call: func(tb testing.TB) { testenv.RequireTool(tb, "triggerflow-no-such-tool", "", "build it") },
			says: []string{"triggerflow-no-such-tool", "not found on PATH", "build it"},
		},
		"RequireTool/missing path": {
			call: func(tb testing.TB) { testenv.RequireTool(tb, "temporal", missing, "run make tools") },
			says: []string{"temporal", missing, "run make tools"},
		},
		"RequireTool/directory": {
			call: func(tb testing.TB) { testenv.RequireTool(tb, "temporal", filepath.Dir(missing), "run make tools") },
			says: []string{"temporal", "is not an executable file"},
		},
	}
	for _, env := range []struct {
		name, value string
		unset, ci   bool
	}{
		{name: "CI=true", value: "true", ci: true},
		{name: "CI=1", value: "1", ci: true},
		{name: "CI=TRUE", value: "TRUE", ci: true},
		{name: "CI unset", unset: true},
		{name: "CI empty", value: ""},
		{name: "CI=false", value: "false"},
		{name: "CI=0", value: "0"},
	} {
		t.Run(env.name, func(t *testing.T) {
			setCI(t, env.value, env.unset)
			require.Equal(t, env.ci, testenv.InCI())
			for name, h := range helpers {
				o := runHelper(h.call)
				require.False(t, o.returned, "%s must end the test", name)
				ended := o.skips
				if env.ci {
					require.Empty(t, o.skips, "%s must not skip under CI", name)
					ended = o.fatals
				} else {
					require.Empty(t, o.fatals, "%s must not fail outside CI", name)
				}
				require.Len(t, ended, 1, "%s ends the test once", name)
				for _, s := range h.says {
					require.Contains(t, ended[0], s, name)
				}
			}
		})
	}
}

// TestRequireToolFindsExecutables: a tool that is there is returned and
// the test goes on, under CI or not.
func TestRequireToolFindsExecutables(t *testing.T) {
	// Not parallel: t.Setenv changes the process environment.
	bin := t.TempDir()
	tool := filepath.Join(bin, "triggerflow-fake-tool")
	require.NoError(t, os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("PATH", bin)
	for _, ci := range []string{"true", "false"} {
		t.Run("CI="+ci, func(t *testing.T) {
			setCI(t, ci, false)
			for _, tc := range []struct{ name, path string }{
				{"by path", tool},
				{"on PATH", ""},
			} {
				var got string
				o := runHelper(func(tb testing.TB) { got = testenv.RequireTool(tb, "triggerflow-fake-tool", tc.path, "") })
				require.True(t, o.returned, "%s: %v %v", tc.name, o.skips, o.fatals)
				require.Empty(t, o.skips, tc.name)
				require.Empty(t, o.fatals, tc.name)
				require.Equal(t, tool, got, tc.name)
			}
		})
	}
}
