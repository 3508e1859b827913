package pgconn_test

import (
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// The dead-peer tests leave pools, a listener and blackhole proxies
// behind them if they do not close them; none may outlive the tests.
func TestMain(m *testing.M) { testpg.VerifyNoLeaks(m) }
