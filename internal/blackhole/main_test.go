package blackhole

import (
	"testing"

	"go.uber.org/goleak"
)

// The proxy starts goroutines per connection; Close must end them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
