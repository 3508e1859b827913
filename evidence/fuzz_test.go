package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// seedFiles adds the package's test reports as seeds, when there are any.
func seedFiles(f *testing.F, glob string) {
	m, _ := filepath.Glob(filepath.Join("testdata", glob))
	for _, p := range m {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzJUnit: no report makes the reader panic, and a summary it accepts
// adds up.
func FuzzJUnit(f *testing.F) {
	seedFiles(f, "*.xml")
	f.Add([]byte(`<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>`))
	f.Add([]byte(`<testsuites><testsuite><testcase><skipped/></testcase><testcase><error/></testcase></testsuite></testsuites>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := JUnit(data)
		if err != nil {
			return
		}
		if s.Tests <= 0 || s.Passed+s.Failures+s.Errors+s.Skipped > s.Tests || s.Passed < 0 || s.Failures < 0 {
			t.Fatalf("accepted a summary that does not add up: %+v", s)
		}
	})
}

// FuzzSARIF: no log makes the reader panic.
func FuzzSARIF(f *testing.F) {
	seedFiles(f, "*.sarif")
	f.Add([]byte(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"ruleId":"r","level":"error","message":{"text":"m"}}]}]}`))
	f.Add([]byte(`{"version":"2.1.0","runs":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = SARIF(data)
	})
}

// FuzzDSSE: no envelope makes the verifier panic.
func FuzzDSSE(f *testing.F) {
	priv, key := fuzzKey()
	f.Add(signedEnvelope(priv, key.ID))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"k","sig":"AAAA"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DSSE(context.Background(), data, []Key{key})
	})
}

func fuzzKey() (ed25519.PrivateKey, Key) {
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat("f", 32)))
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	return priv, Key{ID: "fuzz-key", PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
}

func signedEnvelope(priv ed25519.PrivateKey, id string) []byte {
	stmt := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"` +
		strings.TrimPrefix(artifact, "sha256:") + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`
	s, err := dsse.NewEnvelopeSigner(edSigner{priv: priv, id: id})
	if err != nil {
		return nil
	}
	env, err := s.SignPayload(context.Background(), "application/vnd.in-toto+json", []byte(stmt))
	if err != nil {
		return nil
	}
	b, _ := json.Marshal(env)
	return b
}
