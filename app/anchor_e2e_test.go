package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/anchor"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// writeSigningKey writes an Ed25519 key as openssl genpkey does (PKCS#8
// PEM) and returns its path.
func writeSigningKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	path := filepath.Join(t.TempDir(), "evidence-signing.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSignedBundlesAndAnchoredHead boots the real server with a signing
// key and an anchors file: a report's bundle verifies against the public
// key anyone can fetch; the head is anchored as the server starts; and a
// server started on a chain cut below its newest anchor (a restore from an
// older backup) says so in tollgate_audit_anchor_mismatch while it stays
// ready to judge.
func TestSignedBundlesAndAnchoredHead(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			dbURL := newDatabase(t, dialect)
			anchors := filepath.Join(t.TempDir(), "heads.jsonl")
			cfg := "evidence:\n  signing_key_file: " + writeSigningKey(t) + "\naudit:\n  anchor:\n    file: " + anchors + "\n    interval: 10m\n"
			s := bootURL(t, dbURL, cfg)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			s.check(ci, "", map[string]any{"service": "nochange-svc", "environment": "production", "version": "1.0.0"})
			var rep struct{ ID string }
			now := time.Now().UTC()
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-time.Hour), "to": now}, &rep); st != http.StatusCreated {
				t.Fatalf("report: %d", st)
			}
			st, tgz := s.get("/api/v1/reports/reconciliation/"+rep.ID+"/bundle", cm)
			if st != http.StatusOK {
				t.Fatalf("bundle: %d", st)
			}
			st, keys := s.get("/api/v1/evidence/public-key?format=pem", "") // no token: public
			pub, err := bundle.ParsePublicKeys([]byte(keys))
			if st != http.StatusOK || err != nil {
				t.Fatalf("public key: %d %v", st, err)
			}
			if res, err := bundle.Verify(strings.NewReader(tgz), pub...); err != nil || res.Origin != bundle.OriginVerified {
				t.Fatalf("verify the bundle with the served key: %+v %v", res, err)
			}
			waitFor(t, "the first anchor", func() bool { h, _, _ := anchor.ReadFile(anchors); return len(h) > 0 })
			s.stop()

			// Started again, it anchors the head the check and the report
			// left; then the newest rows go, as with a restore.
			s = bootURL(t, dbURL, cfg)
			head, err := s.app.DB.AuditHead(context.Background())
			if err != nil || head.Seq < 3 {
				t.Fatalf("head %+v %v", head, err)
			}
			waitFor(t, "the head anchored", func() bool {
				h, _, _ := anchor.ReadFile(anchors)
				return len(h) > 0 && h[len(h)-1] == head
			})
			if v := s.metricValue("tollgate_audit_anchor_mismatch"); v != "0" {
				t.Fatalf("mismatch %q on an intact chain", v)
			}
			if _, err := s.app.DB.SQLX().ExecContext(context.Background(), s.app.DB.SQLX().Rebind("DELETE FROM audit_log WHERE seq > ?"), head.Seq-2); err != nil {
				t.Fatal(err)
			}
			s.stop()
			s = bootURL(t, dbURL, cfg)
			waitFor(t, "the mismatch reported", func() bool { return s.metricValue("tollgate_audit_anchor_mismatch") == "1" })
			if st, _, _ := s.raw("GET", "/readyz", nil, nil); st != http.StatusOK {
				t.Errorf("/readyz %d: a chain behind its anchor is reported, not a reason to stop judging", st)
			}
			if v := s.metricValue(`tollgate_audit_anchor_writes_total{outcome="ok",target="file"}`); v == "" {
				t.Error("the anchors written are not counted")
			}
		})
	}
}

// TestDoctorComparesTheChainWithItsAnchors: the doctor reads the anchors
// file and fails when the chain no longer reaches its newest anchor, and
// says a signed, anchored set-up is so.
func TestDoctorComparesTheChainWithItsAnchors(t *testing.T) {
	dbURL := newDatabase(t, "sqlite")
	anchors := filepath.Join(t.TempDir(), "heads.jsonl")
	// The server anchors nothing itself: the doctor alone reads the file.
	s := bootURL(t, dbURL, "")
	cfg, err := config.Parse([]byte("evidence:\n  signing_key_file: "+writeSigningKey(t)+"\naudit:\n  anchor:\n    file: "+anchors+"\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := s.token(core.RoleCI)
	s.check(ci, "", map[string]any{"service": "nochange-svc", "environment": "production", "version": "1.0.0"})
	head, err := s.app.DB.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	doctor := func() []connectors.Finding {
		t.Helper()
		for _, sec := range app.Doctor(context.Background(), cfg, s.app.Log, app.DoctorOptions{DB: s.app.DB}) {
			if sec.Scope == "audit" {
				return sec.Findings
			}
		}
		t.Fatal("no audit section")
		return nil
	}
	if f := doctor(); !hasFinding(f, "evidence signing", connectors.StatusOK) {
		t.Errorf("signed: %+v", f)
	}
	if f := doctor(); !hasFinding(f, "anchor file", connectors.StatusWarn) {
		t.Errorf("no anchors file yet: %+v", f)
	}
	if err := anchor.Append(anchors, head); err != nil {
		t.Fatal(err)
	}
	if f := doctor(); !hasFinding(f, "anchor file", connectors.StatusOK) {
		t.Errorf("intact: %+v", f)
	}
	if err := anchor.Append(anchors, core.AuditHead{Seq: head.Seq + 5, Hash: strings.Repeat("a", 64)}); err != nil {
		t.Fatal(err)
	}
	if f := doctor(); !hasFinding(f, "anchor file", connectors.StatusFail) {
		t.Errorf("a chain behind its newest anchor: %+v", f)
	}
}
