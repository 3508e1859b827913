package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/tollgate-dev/tollgate/core"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The reports in testdata are real tools' output: gotestsum and
// go-junit-report over a small Go package with a failing subtest and a
// skipped test, gotestsum over tollgate's own core tests, a Maven
// Surefire report, gosec and Semgrep SARIF.
func TestJUnit(t *testing.T) {
	tests := []struct {
		file   string
		want   core.TestSummary
		status string
		err    string
	}{
		{file: "gotestsum-failing.xml", want: core.TestSummary{Tests: 5, Passed: 2, Failures: 2, Skipped: 1}, status: core.EvidenceFailed},
		{file: "go-junit-report-failing.xml", want: core.TestSummary{Tests: 5, Passed: 2, Failures: 2, Skipped: 1}, status: core.EvidenceFailed},
		{file: "gotestsum-passing.xml", status: core.EvidencePassed},
		{file: "surefire-TEST-com.example.pay.PaymentServiceTest.xml", want: core.TestSummary{Tests: 4, Passed: 1, Failures: 1, Errors: 1, Skipped: 1}, status: core.EvidenceFailed},
		{file: "junit-all-skipped.xml", want: core.TestSummary{Tests: 3, Skipped: 3}, status: core.EvidenceFailed}, // nothing proven
		{file: "junit-zero-tests.xml", err: "zero tests"},
		{file: "junit-empty.xml", err: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := JUnit(read(t, tt.file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("JUnit = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.Tests != 0 && got != tt.want {
				t.Fatalf("JUnit = %+v, want %+v", got, tt.want)
			}
			if got.Tests == 0 || TestStatus(got) != tt.status {
				t.Fatalf("JUnit = %+v, status %s, want %s", got, TestStatus(got), tt.status)
			}
		})
	}
	if _, err := JUnit([]byte("<testsuites><testsuite")); err == nil {
		t.Fatal("truncated XML must be refused")
	}
}

// PHPUnit writes a data provider's cases as a suite inside the class's
// suite: a failure there fails the report.
func TestJUnitNestedSuites(t *testing.T) {
	doc := `<testsuites><testsuite name="PaymentTest" tests="2">
<testcase name="testA"/>
<testsuite name="PaymentTest::testB" tests="1"><testcase name="testB with data set #0"><failure>boom</failure></testcase></testsuite>
</testsuite></testsuites>`
	got, err := JUnit([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if want := (core.TestSummary{Tests: 2, Passed: 1, Failures: 1}); got != want || TestStatus(got) != core.EvidenceFailed {
		t.Fatalf("JUnit = %+v (%s), want %+v failed", got, TestStatus(got), want)
	}
}

// The JUnit reader keeps every element's inner XML: a body nested
// thousands deep is refused before it is read, in bounded memory.
func TestJUnitDeepNestingRefused(t *testing.T) {
	const depth = 9000
	doc := strings.Repeat("<a>", depth) + strings.Repeat("x", 200<<10) + strings.Repeat("</a>", depth)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := JUnit([]byte(doc))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "deep") {
		t.Fatalf("JUnit(deep) = %v, want a refusal naming the depth", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("reading the deep report allocated %d MB", grew>>20)
	}
}

func TestSARIF(t *testing.T) {
	tests := []struct {
		file     string
		findings int
		max      string
		err      string
	}{
		{file: "gosec.sarif", findings: 2, max: "high"},
		{file: "semgrep-sqli.sarif", findings: 1, max: "high"}, // security-severity 8.0
		{file: "semgrep-clean.sarif", findings: 0, max: "none"},
		{file: "sarif-no-runs.sarif", err: "no run"},
		// CodeQL keeps its rules in tool.extensions[]: the rule's 9.3 makes
		// the finding critical, not the "high" its level alone would give.
		{file: "codeql-extensions.sarif", findings: 1, max: "critical"},
		{file: "sarif-failed-run.sarif", err: "did not complete"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := SARIF(read(t, tt.file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("SARIF = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Findings != tt.findings || got.MaxSeverity != tt.max || len(got.Tools) != 1 {
				t.Fatalf("SARIF = %+v, want %d findings, highest %s", got, tt.findings, tt.max)
			}
		})
	}
	for _, bad := range []string{"", "   ", "{", `{"version":"2.1.0"}`} {
		if _, err := SARIF([]byte(bad)); err == nil {
			t.Fatalf("SARIF(%q) must fail", bad)
		}
	}
}

// testKey is a fixed Ed25519 key, so envelopes are reproducible.
func testKey(t *testing.T, seed byte) (ed25519.PrivateKey, Key) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), 32)))
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, Key{ID: "ci-key-" + string(rune('a'+seed)), PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
}

type edSigner struct {
	priv ed25519.PrivateKey
	id   string
}

func (s edSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, data), nil
}
func (s edSigner) KeyID() (string, error) { return s.id, nil }

const artifact = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

func envelope(t *testing.T, priv ed25519.PrivateKey, id string) []byte {
	t.Helper()
	return envelopeOf(t, priv, id, "application/vnd.in-toto+json", "https://in-toto.io/Statement/v1")
}

// envelopeOf signs a statement of type stmtType as payloadType.
func envelopeOf(t *testing.T, priv ed25519.PrivateKey, id, payloadType, stmtType string) []byte {
	t.Helper()
	stmt := `{"_type":"` + stmtType + `","subject":[{"name":"registry.example.com/pay","digest":{"sha256":"` +
		strings.TrimPrefix(artifact, "sha256:") + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1"}}}`
	s, err := dsse.NewEnvelopeSigner(edSigner{priv: priv, id: id})
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.SignPayload(context.Background(), payloadType, []byte(stmt))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	return b
}

func TestDSSE(t *testing.T) {
	priv, key := testKey(t, 0)
	_, other := testKey(t, 1)
	signed := envelope(t, priv, key.ID)

	var env dsse.Envelope
	_ = json.Unmarshal(signed, &env)
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	env.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), "5f70", "6f70", 1)))
	tampered, _ := json.Marshal(env)

	tests := []struct {
		name string
		data []byte
		keys []Key
		err  string
	}{
		{name: "signed with the environment's key", data: signed, keys: []Key{other, key}},
		{name: "tampered payload", data: tampered, keys: []Key{key}, err: "does not verify"},
		{name: "signed by a key the environment does not trust", data: signed, keys: []Key{other}, err: "does not verify"},
		{name: "no keys configured", data: signed, err: "no signing keys"},
		{name: "empty", data: nil, keys: []Key{key}, err: "empty"},
		{name: "no signature", data: []byte(`{"payloadType":"x","payload":"e30=","signatures":[]}`), keys: []Key{key}, err: "no payload or no signature"},
		// The environment's key may sign other documents naming a digest.
		{name: "another payload type", data: envelopeOf(t, priv, key.ID, "application/vnd.example.report+json", "https://in-toto.io/Statement/v1"), keys: []Key{key}, err: "not an in-toto statement"},
		{name: "not a statement", data: envelopeOf(t, priv, key.ID, "application/vnd.in-toto+json", "https://example.com/Report/v1"), keys: []Key{key}, err: "not an in-toto statement"},
		{name: "a v0.1 statement", data: envelopeOf(t, priv, key.ID, "application/vnd.in-toto+json", "https://in-toto.io/Statement/v0.1"), keys: []Key{key}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := DSSE(context.Background(), tt.data, tt.keys)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("DSSE = %+v, %v; want an error with %q", sig, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sig.KeyID != key.ID || sig.KeyFingerprint != core.KeyFingerprint(key.PEM) || len(sig.Digests) != 1 || sig.Digests[0] != artifact {
				t.Fatalf("DSSE = %+v", sig)
			}
		})
	}
}

func TestValidDigest(t *testing.T) {
	for d, want := range map[string]bool{artifact: true, "": false, "sha256:abc": false, "md5:" + strings.Repeat("a", 64): false, strings.ToUpper(artifact): false} {
		if ValidDigest(d) != want {
			t.Errorf("ValidDigest(%q) = %v", d, !want)
		}
	}
}
