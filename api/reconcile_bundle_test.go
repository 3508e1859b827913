package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// bundleReports serves one report with one finding; with failLater, every
// walk of its findings after the first fails, as a connection lost while
// the bundle is written would.
type bundleReports struct {
	Reports
	failLater bool
	walks     *int
}

func (bundleReports) Get(_ context.Context, id string) (core.Report, error) {
	if id != "r1" {
		return core.Report{}, core.Errorf(core.KindNotFound, "report %s not found", id)
	}
	return core.Report{ID: id, Summary: core.ReconcileSummary{Findings: 1, ByCode: map[string]int{core.CodeGateBypassed: 1}}}, nil
}

func (r bundleReports) Findings(_ context.Context, _ string, fn func(core.ReconcileFinding) error) error {
	if *r.walks++; r.failLater && *r.walks > 1 {
		return errors.New("connection lost")
	}
	return fn(core.ReconcileFinding{ID: 1, Code: core.CodeGateBypassed, Ref: "payments-api"})
}

func (r bundleReports) FindingsOfCode(ctx context.Context, id, code string, fn func(core.ReconcileFinding) error) error {
	return r.Findings(ctx, id, func(f core.ReconcileFinding) error {
		if f.Code != code {
			return nil
		}
		return fn(f)
	})
}

// bundleReader answers the audit reads of a bundle with nothing.
type bundleReader struct{ Reader }

func (bundleReader) ListAudit(context.Context, core.AuditFilter) ([]core.AuditEntry, error) {
	return nil, nil
}

func (bundleReader) AuditHead(context.Context) (core.AuditHead, error) { return core.AuditHead{}, nil }

// The bundle is streamed: a report that cannot be found is still a 404
// (read before the first byte), a whole bundle verifies, and a failure
// once the archive has started aborts the connection (the archive lacks
// its manifest) instead of ending it as if it were whole.
func TestReportBundleStreams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		id        string
		failLater bool
	}{
		{"whole", "r1", false},
		{"missing report", "nope", false},
		{"cut short", "r1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reports: bundleReports{failLater: tc.failLater, walks: new(int)}, Reader: bundleReader{}})
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/"+tc.id+"/bundle", nil), rec)
			c.SetPathValues(echo.PathValues{{Name: "id", Value: tc.id}})
			var err error
			aborted := aborts(func() { err = s.reportBundle(c) })
			switch tc.name {
			case "whole":
				if err != nil || aborted || rec.Code != http.StatusOK {
					t.Fatalf("bundle: %d %v aborted=%v", rec.Code, err, aborted)
				}
				if _, err := bundle.Verify(rec.Body); err != nil {
					t.Fatalf("verify: %v", err)
				}
			case "missing report":
				if !core.IsKind(err, core.KindNotFound) || aborted || rec.Body.Len() != 0 {
					t.Fatalf("missing report: %v aborted=%v, %d bytes written", err, aborted, rec.Body.Len())
				}
			case "cut short":
				if !aborted {
					t.Fatalf("a bundle cut short ended normally (%v)", err)
				}
				if _, err := bundle.Verify(rec.Body); err == nil {
					t.Fatal("the bundle cut short verifies")
				}
			}
		})
	}
}

// A report whose findings fail once its 200 is sent (the database lost
// mid-stream) aborts the connection in every format, so a client never
// takes a short report that ended cleanly for the whole.
func TestReportStreamCutShortAborts(t *testing.T) {
	for _, format := range []string{"json", "csv", "html"} {
		t.Run(format, func(t *testing.T) {
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reports: bundleReports{failLater: true, walks: new(int)}, Reader: bundleReader{}})
			// The first walk succeeds: the html format walks per code.
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/r1?format="+format, nil), rec)
			c.SetPathValues(echo.PathValues{{Name: "id", Value: "r1"}})
			*(s.deps.Reports.(bundleReports).walks) = 1 // every walk fails
			aborted := aborts(func() { _ = s.getReport(c) })
			if !aborted {
				t.Fatalf("a %s report cut short ended normally (%d bytes)", format, rec.Body.Len())
			}
		})
	}
}

// aborts runs f and reports whether it aborted the connection
// (http.ErrAbortHandler); any other panic goes on.
func aborts(f func()) (aborted bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			aborted = true
		}
	}()
	f()
	return false
}

// raceReports serves report r2, whose finding 1 a change manager
// acknowledges while its bundle is being made: from the moment the world
// commits (commit, set by the test's trigger), the finding reads
// acknowledged and its audit row (seq 5) is in the chain. Finding 3 was
// acknowledged before (seq 3); finding 2 is a LINKS_CHANGED_AFTER_DEPLOY
// on dep-9, whose links a report changed (seq 2).
type raceReports struct {
	Reports
	w *ackRace
}

type ackRace struct {
	committed bool
	walks     int
	flipAt    string // "head": once the audit head is read; "walk": at the second findings walk
	rows      []core.AuditEntry
}

func newAckRace(flipAt string) *ackRace {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	specs := []struct{ action, subject, data string }{
		{"report.reconciliation", "report:r2", `{}`},
		{core.ActionDeploymentLinks, "deployment:dep-9", `{"before":{"changes":[]},"after":{"changes":["CHG9"]}}`},
		{core.ActionFindingAck, "report:r2", `{"finding":3,"comment":"known"}`},
		{core.ActionGateDecision, "release:other", `{"decision_id":"elsewhere"}`},
		{core.ActionFindingAck, "report:r2", `{"finding":1,"comment":"accepted mid-stream"}`},
	}
	w := &ackRace{flipAt: flipAt}
	prev := core.GenesisHash
	for i, sp := range specs {
		e := core.AuditEntry{Seq: int64(i + 1), At: at.Add(time.Duration(i) * time.Minute), Actor: "cm", Action: sp.action, Subject: sp.subject, Data: []byte(sp.data), PrevHash: prev}
		e.Hash = core.HashAuditEntry(prev, e)
		prev = e.Hash
		w.rows = append(w.rows, e)
	}
	return w
}

// visible is the chain as committed now: row 5 only once the
// acknowledgement committed.
func (w *ackRace) visible() []core.AuditEntry {
	if w.committed {
		return w.rows
	}
	return w.rows[:4]
}

func (r raceReports) Get(_ context.Context, id string) (core.Report, error) {
	if id != "r2" {
		return core.Report{}, core.Errorf(core.KindNotFound, "report %s not found", id)
	}
	acked := 1
	if r.w.committed {
		acked = 2
	}
	return core.Report{ID: id, Summary: core.ReconcileSummary{Findings: 3, Acknowledged: acked,
		ByCode: map[string]int{core.CodeGateBypassed: 2, core.CodeLinksChangedAfterDeploy: 1}}}, nil
}

func (r raceReports) Findings(_ context.Context, _ string, fn func(core.ReconcileFinding) error) error {
	if r.w.walks++; r.w.flipAt == "walk" && r.w.walks == 2 {
		r.w.committed = true
	}
	ack := &core.Acknowledgement{By: "cm", At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Comment: "accepted"}
	fs := []core.ReconcileFinding{
		{ID: 1, Code: core.CodeGateBypassed, Deployment: core.DeploymentRef{ID: "dep-1"}},
		{ID: 2, Code: core.CodeLinksChangedAfterDeploy, Deployment: core.DeploymentRef{ID: "dep-9"}},
		{ID: 3, Code: core.CodeGateBypassed, Deployment: core.DeploymentRef{ID: "dep-3"}, Ack: ack},
	}
	if r.w.committed {
		fs[0].Ack = ack
	}
	for _, f := range fs {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func (r raceReports) FindingsOfCode(ctx context.Context, id, code string, fn func(core.ReconcileFinding) error) error {
	return r.Findings(ctx, id, func(f core.ReconcileFinding) error {
		if f.Code != code {
			return nil
		}
		return fn(f)
	})
}

// raceReader reads the chain as committed at each call.
type raceReader struct {
	Reader
	w *ackRace
}

func (r raceReader) ListAudit(_ context.Context, f core.AuditFilter) ([]core.AuditEntry, error) {
	var out []core.AuditEntry
	for _, e := range r.w.visible() {
		if e.Seq > f.AfterSeq && (f.Subject == "" || e.Subject == f.Subject) && (f.Action == "" || e.Action == f.Action) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (r raceReader) AuditHead(context.Context) (core.AuditHead, error) {
	rows := r.w.visible()
	last := rows[len(rows)-1]
	if r.w.flipAt == "head" {
		r.w.committed = true
	}
	return core.AuditHead{Seq: last.Seq, Hash: last.Hash, At: last.At}, nil
}

// TestReportBundleConsistentWithItsAuditHead: an acknowledgement committed
// while a bundle is made (right after its audit head is read, or between
// its reads of the findings) is in none of its files — report.json,
// report.csv and the summary show what audit.json proves, and audit.json
// holds no row past the head its manifest records; the acknowledgement
// from before is in all of them. A LINKS_CHANGED_AFTER_DEPLOY finding's
// deployment.links row is in audit.json, and the bundle verifies.
func TestReportBundleConsistentWithItsAuditHead(t *testing.T) {
	for _, flipAt := range []string{"head", "walk"} {
		t.Run(flipAt, func(t *testing.T) {
			w := newAckRace(flipAt)
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reports: raceReports{w: w}, Reader: raceReader{w: w}, Clock: core.SystemClock})
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/r2/bundle", nil), rec)
			c.SetPathValues(echo.PathValues{{Name: "id", Value: "r2"}})
			if err := s.reportBundle(c); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("bundle: %d %v", rec.Code, err)
			}
			if !w.committed {
				t.Fatal("the acknowledgement never committed: the test raced nothing")
			}
			body := rec.Body.Bytes()
			res, err := bundle.Verify(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var audit []core.AuditEntry
			readJSON(t, body, bundle.AuditName, &audit)
			var seqs []int64
			for _, e := range audit {
				seqs = append(seqs, e.Seq)
			}
			if !slices.Equal(seqs, []int64{1, 2, 3}) {
				t.Errorf("audit.json rows %v, want 1, 2, 3 (the report, dep-9's deployment.links, finding 3's ack)", seqs)
			}
			if res.Manifest.AuditHead == nil || res.Manifest.AuditHead.Seq != 4 {
				t.Errorf("manifest head %+v, want seq 4", res.Manifest.AuditHead)
			}
			var doc struct {
				Report   core.Report             `json:"report"`
				Findings []core.ReconcileFinding `json:"findings"`
			}
			readJSON(t, body, "report.json", &doc)
			if len(doc.Findings) != 3 || doc.Findings[0].Ack != nil || doc.Findings[2].Ack == nil || doc.Report.Summary.Acknowledged != 1 {
				t.Errorf("report.json: summary acknowledged %d, findings %+v; want finding 3 acknowledged only", doc.Report.Summary.Acknowledged, doc.Findings)
			}
			csv, err := bundle.ReadFile(bytes.NewReader(body), "report.csv")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(csv), "accepted mid-stream") || strings.Count(string(csv), "accepted") != 1 {
				t.Errorf("report.csv shows acknowledgements other than finding 3's:\n%s", csv)
			}
			html, err := bundle.ReadFile(bytes.NewReader(body), "report.html")
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(html), `class="finding accepted"`); n != 1 || !strings.Contains(string(html), `class="finding accepted" id="finding-3"`) {
				t.Errorf("report.html shows %d acknowledged findings, want finding 3 alone", n)
			}
		})
	}
}

func readJSON(t *testing.T, archive []byte, name string, v any) {
	t.Helper()
	b, err := bundle.ReadFile(bytes.NewReader(archive), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// A server with a signing key signs its bundles and serves the public
// key, as JSON and as the PEM file the verifier reads; one without
// answers 404, so a missing key is never mistaken for an empty one.
func TestBundleSignedAndKeyServed(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, err := bundle.NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	_, oldPriv, _ := ed25519.GenerateKey(rand.Reader)
	old, _ := bundle.NewSigningKey(oldPriv)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(Deps{Logger: log, Reports: bundleReports{walks: new(int)}, Reader: bundleReader{},
		EvidenceKeys: EvidenceKeys{Signing: key, Previous: []bundle.PublicKey{old.Public}}})
	get := func(s *Server, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}

	rec := httptest.NewRecorder()
	c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/r1/bundle", nil), rec)
	c.SetPathValues(echo.PathValues{{Name: "id", Value: "r1"}})
	if err := s.reportBundle(c); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("bundle: %d %v", rec.Code, err)
	}
	pemFile := get(s, "/api/v1/evidence/public-key?format=pem")
	keys, err := bundle.ParsePublicKeys(pemFile.Body.Bytes())
	if pemFile.Code != http.StatusOK || err != nil || len(keys) != 2 {
		t.Fatalf("pem: %d %v %d keys", pemFile.Code, err, len(keys))
	}
	res, err := bundle.Verify(bytes.NewReader(rec.Body.Bytes()), keys...)
	if err != nil || res.Origin != bundle.OriginVerified || res.KeyFingerprint != key.Public.Fingerprint {
		t.Fatalf("verify with the served keys: %+v %v", res, err)
	}

	js := get(s, "/api/v1/evidence/public-key")
	var body struct {
		Algorithm, Fingerprint string
		PublicKey              string `json:"public_key"`
		Previous               []struct{ Fingerprint string }
	}
	if err := json.Unmarshal(js.Body.Bytes(), &body); err != nil || js.Code != http.StatusOK || body.Algorithm != "ed25519" ||
		body.Fingerprint != key.Public.Fingerprint || !strings.Contains(body.PublicKey, "BEGIN PUBLIC KEY") ||
		len(body.Previous) != 1 || body.Previous[0].Fingerprint != old.Public.Fingerprint {
		t.Fatalf("json: %d %s", js.Code, js.Body)
	}
	if r := get(s, "/api/v1/evidence/public-key?format=der"); r.Code != http.StatusBadRequest {
		t.Errorf("format=der: %d", r.Code)
	}
	unsigned := New(Deps{Logger: log, Reports: bundleReports{walks: new(int)}, Reader: bundleReader{}})
	if r := get(unsigned, "/api/v1/evidence/public-key"); r.Code != http.StatusNotFound || !strings.Contains(r.Body.String(), "evidence.signing_key_file") {
		t.Errorf("no key: %d %s", r.Code, r.Body)
	}
}
