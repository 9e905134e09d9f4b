package e2e

import (
	"errors"
	"testing"

	"github.com/authprobe/authprobe/test/testutil"
)

// expressModules is the Express server's node_modules, installed at most
// once per test binary.
var expressModules build

// mustExpressModules returns the Express server's node_modules
// (testutil.ExpressModules). It skips when npm or its registry is not
// there.
func mustExpressModules(tb testing.TB) string {
	tb.Helper()
	expressModules.once.Do(func() {
		expressModules.path, expressModules.err = testutil.ExpressModules(testutil.RepoRoot(tb))
	})
	if errors.Is(expressModules.err, testutil.ErrRegistryUnreachable) {
		tb.Skipf("express server: %v", expressModules.err)
	}
	if expressModules.err != nil {
		tb.Fatalf("express server: %v", expressModules.err)
	}
	return expressModules.path
}
