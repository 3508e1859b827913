package api

import (
	"bytes"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/labstack/echo/v5"
	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonenc"
)

// The gate check is the hot path of the API: its request and its answer
// are coded with segmentio/encoding's json, which needs no reflection per
// call, with encoding/json's semantics kept exactly (gatejson_test.go
// holds them to it).

// decodeGateRequest is decodeJSON for a gate request. The fast decoder
// only ever accepts: a body it takes whole, with no unknown field, no
// wrong type and nothing after the document, is one encoding/json decodes
// to the same request. Anything else (every error, and the odd documents
// only encoding/json takes) is decoded again by decodeJSONBytes, so what
// is rejected, and the message saying why, are decodeJSON's.
func decodeGateRequest(c *echo.Context, req *core.GateRequest) error {
	// The decoders copy every string they keep, so the body's buffer goes
	// back to the pool when they are done.
	b, release, err := readPooledBody(c)
	if err != nil {
		return err
	}
	defer release()
	if fastGateRequest(b, req) {
		return nil
	}
	*req = core.GateRequest{}
	return decodeJSONBytes(b, req)
}

// fastGateRequest decodes b into req when the fast decoder takes all of
// it; false leaves req to be decoded again.
func fastGateRequest(b []byte, req *core.GateRequest) bool {
	if len(bytes.TrimSpace(b)) == 0 || !utf8.Valid(b) || bytes.IndexByte(b, '\\') >= 0 {
		// Escapes (\u0000, lone surrogates) are left to encoding/json,
		// whose replacement of bad ones is the reference, and to
		// decodeJSONBytes's refusal of NUL.
		return false
	}
	rest, err := segjson.Parse(b, req, segjson.DisallowUnknownFields)
	return err == nil && len(rest) == 0
}

// renderGateCheck writes the gate's answer as c.JSON does (the same bytes:
// encoding/json's escaping, and its trailing newline).
func renderGateCheck(c *echo.Context, resp gateCheckResponse) error {
	buf := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(buf)
	b, err := jsonenc.Append((*buf)[:0], resp, jsonenc.EscapeHTML)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	*buf = b
	return c.JSONBlob(http.StatusOK, b) // written before it returns
}

// answerBufs are renderGateCheck's buffers.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
