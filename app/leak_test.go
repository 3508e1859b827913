package app_test

import (
	"bytes"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestServeLeavesNoGoroutine boots the whole server (HTTP, normalizer,
// notification listener, reload loop), works it, stops it, and checks
// that every goroutine it started has ended.
func TestServeLeavesNoGoroutine(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			url := "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
			if dialect == "postgres" {
				url = testpg.NewMigratedDatabase(t) // its admin pool lives until the test ends
			}
			before := goleak.IgnoreCurrent()
			s := bootURL(t, url, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			s.sendWebhook(change("CHG1", core.ApprovalApproved, time.Now()))
			s.check(ci, "", map[string]any{"service": "pay", "environment": "staging", "version": "1", "changes": []string{"CHG1"}})
			st, _, _ := s.raw("POST", "/webhooks/itsm", bytes.NewReader([]byte("{")), map[string]string{"X-Tollgate-Signature": signed([]byte("{"))})
			if st >= 500 {
				t.Fatalf("webhook: %d", st)
			}
			s.http.CloseIdleConnections()
			s.stop()
			http.DefaultClient.CloseIdleConnections()
			goleak.VerifyNone(t, before)
		})
	}
}
