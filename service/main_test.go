package service

import (
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestMain fails the package's tests if any leaves a goroutine behind
// (a retry loop, a hanging call, a connection never closed).
func TestMain(m *testing.M) { testpg.VerifyNoLeaks(m) }
