package api

import (
	"bytes"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// EvidenceKeys are the keys of the evidence bundles this server makes:
// Signing signs them (nil: they are unsigned), Previous are the public
// keys of those it signed with before a rotation.
type EvidenceKeys struct {
	Signing  *bundle.SigningKey
	Previous []bundle.PublicKey
}

// publicKeyJSON is one key as GET /api/v1/evidence/public-key shows it.
type publicKeyJSON struct {
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
}

func newPublicKeyJSON(k bundle.PublicKey) publicKeyJSON {
	return publicKeyJSON{Algorithm: "ed25519", Fingerprint: k.Fingerprint, PublicKey: string(k.PEM())}
}

// evidencePublicKey answers the public key evidence bundles are signed
// with, and the previous ones: as JSON, or (?format=pem) as the PEM file
// `tollgate audit verify --bundle FILE --public-key KEYS` reads. It is
// public: a public key is no secret, and whoever verifies a bundle
// offline — an external auditor handed it by a change manager — may hold
// no tollgate token, yet must take the key from the server over TLS, not
// from whoever handed the bundle over.
func (s *Server) evidencePublicKey(c *echo.Context) error {
	keys := s.deps.EvidenceKeys
	if keys.Signing == nil {
		return core.Errorf(core.KindNotFound, "evidence bundles are not signed: this server has no evidence.signing_key_file")
	}
	switch c.QueryParam("format") {
	case "", "json":
		prev := make([]publicKeyJSON, len(keys.Previous))
		for i, k := range keys.Previous {
			prev[i] = newPublicKeyJSON(k)
		}
		return c.JSON(http.StatusOK, struct {
			publicKeyJSON
			Previous []publicKeyJSON `json:"previous"`
		}{newPublicKeyJSON(keys.Signing.Public), prev})
	case "pem":
		var b bytes.Buffer
		b.Write(keys.Signing.Public.PEM())
		for _, k := range keys.Previous {
			b.Write(k.PEM())
		}
		return c.Blob(http.StatusOK, echo.MIMETextPlainCharsetUTF8, b.Bytes())
	default:
		return core.Invalid("format", "must be json or pem")
	}
}
