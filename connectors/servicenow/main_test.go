package servicenow

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leaves a goroutine behind
// (a retry loop, a hanging call, a connection never closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
