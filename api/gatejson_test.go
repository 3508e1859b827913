package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
)

// gateBodies are gate requests the fast decoder must agree with
// encoding/json on: accepted or not, and to what.
var gateBodies = []string{
	`{"service":"payments-api","environment":"production","version":"1.4.2","changes":["CHG0000024"],"incidents":[],"pipeline":{"provider":"github","run_id":"1","url":"https://x"}}`,
	`{"service":"a","environment":"production","version":"1","team":"t","commit":"abc","actor":"dave","digest":"sha256:00"}`,
	` {"service":"a"} `, "{\"service\":\"a\"}\n", `{"SERVICE":"a","Environment":"b"}`, `{"ſervice":"a"}`, `{"service":"a","service":"b"}`,
	`{"changes":["A"],"changes":["B","C"]}`, `{"changes":[]}`, `{"changes":null}`, `{"pipeline":null}`, `{"pipeline":{}}`,
	`{"pipeline":{"provider":"a"},"pipeline":{"run_id":"b"}}`, `null`, `{}`,
	`{"service":"a","unknown":1}`, `{"changes":"CHG1"}`, `{"changes":[1]}`, `{"service":1}`, `{"service":true}`,
	`{"pipeline":[]}`, `{"pipeline":{"x":1}}`, `[]`, `""`, `1`, `{} {}`, `{}}`, `{}]`, `{}x`, `{"service":"a"`,
	`{"service":"\u0000"}`, `{"service":"\ud800"}`, `{"service":"a\/b"}`, "{\"service\":\"\xff\"}", "{\"service\":\"a\tb\"}",
	`{"service":"<&>"}`, `{"service":"é ✓ 😀"}`, `{"IgnoredTeam":"x"}`, `{"-":"x"}`, `{"service":"a",}`, `{,}`, ``, `   `,
	`{"service":"a" "environment":"b"}`, `{"changes":["a",]}`, `{"service":nul}`, `{"service":"a"}   {`,
}

// stdGateRequest is the reference: decodeJSONBytes, encoding/json alone.
func stdGateRequest(b []byte) (core.GateRequest, error) {
	var req core.GateRequest
	err := decodeJSONBytes(b, &req)
	return req, err
}

// checkFastAgrees fails when the fast decoder accepts b and encoding/json
// does not, or decodes it to another request.
func checkFastAgrees(t *testing.T, b []byte) {
	t.Helper()
	var fast core.GateRequest
	if !fastGateRequest(b, &fast) {
		return // decoded again by decodeJSONBytes: the reference by construction
	}
	std, err := stdGateRequest(b)
	if err != nil {
		t.Fatalf("%q: the fast decoder accepts what encoding/json rejects (%v)", b, err)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%q: the fast decoder gives %#v, encoding/json %#v", b, fast, std)
	}
}

func TestGateRequestFastDecodeAgrees(t *testing.T) {
	accepted := 0
	for _, s := range gateBodies {
		checkFastAgrees(t, []byte(s))
		if fastGateRequest([]byte(s), new(core.GateRequest)) {
			accepted++
		}
	}
	if accepted < 10 { // the fast path must actually be taken
		t.Errorf("the fast decoder took %d of the table's bodies", accepted)
	}
	// Through the handler's decoder, errors are decodeJSON's.
	e := echo.New()
	for _, s := range gateBodies {
		decode := func(f func(*echo.Context, *core.GateRequest) error) (core.GateRequest, string) {
			c := e.NewContext(httptest.NewRequest("POST", "/api/v1/gate/check", strings.NewReader(s)), httptest.NewRecorder())
			var req core.GateRequest
			if err := f(c, &req); err != nil {
				return core.GateRequest{}, err.Error()
			}
			return req, ""
		}
		got, gerr := decode(decodeGateRequest)
		want, werr := decode(func(c *echo.Context, r *core.GateRequest) error { return decodeJSON(c, r) })
		if gerr != werr || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: decodeGateRequest %#v %q, decodeJSON %#v %q", s, got, gerr, want, werr)
		}
	}
}

// FuzzGateRequestFastDecode holds the fast decoder to encoding/json on
// arbitrary bodies: whatever it accepts, encoding/json accepts as the same
// request.
func FuzzGateRequestFastDecode(f *testing.F) {
	for _, s := range gateBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastAgrees(t, b) })
}

// TestGateCheckRenderSameBytes holds renderGateCheck to c.JSON's bytes.
func TestGateCheckRenderSameBytes(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)
	for i, resp := range []gateCheckResponse{
		{Decision: core.Allow, DecisionID: "0193-x", ReleaseID: "r1", Reasons: []core.Reason{}, EvaluatedAt: at, PolicyVersion: 3},
		{Decision: core.Deny, DecisionID: "d", ReleaseID: "r", EvaluatedAt: at.Truncate(time.Second), Emergency: true,
			Reasons: []core.Reason{{Code: core.CodeChangeNotFound, Message: `change "CHG1" <not> found & "\ é ✓ 😀` + "\u2028\u2029\x7f\t", Ref: "CHG1"}}},
		{Decision: core.Allow, WouldBe: core.Wait, EvaluatedAt: at.In(time.FixedZone("x", 3600)), Reasons: []core.Reason{{Code: "A"}},
			Evidence: []core.EvidenceMatch{{}}},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(resp); err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest("POST", "/", nil), rec)
		if err := renderGateCheck(c, resp); err != nil {
			t.Fatal(err)
		}
		if rec.Body.String() != want.String() {
			t.Errorf("%d: renderGateCheck\n%s\nc.JSON\n%s", i, rec.Body, want.String())
		}
		rec2 := httptest.NewRecorder()
		if err := e.NewContext(httptest.NewRequest("POST", "/", nil), rec2).JSON(200, resp); err != nil {
			t.Fatal(err)
		}
		if rec.Code != rec2.Code || rec.Header().Get("Content-Type") != rec2.Header().Get("Content-Type") || rec2.Body.String() != want.String() {
			t.Errorf("%d: status/content type %d %q, c.JSON %d %q", i, rec.Code, rec.Header().Get("Content-Type"), rec2.Code, rec2.Header().Get("Content-Type"))
		}
	}
}

// BenchmarkGateCheckJSON measures the gate handler's own JSON work on a
// typical request and answer: decoding the request (std: decodeJSONBytes;
// fast: the fast decoder) and encoding the answer (std: encoding/json's
// Encoder, as c.JSON; fast: renderGateCheck's).
//
//	go test ./api -run '^$' -bench GateCheckJSON -cpu 1
func BenchmarkGateCheckJSON(b *testing.B) {
	body := []byte(`{"service": "payments-api", "environment": "production", "version": "3.1041.0", "team": "payments",
 "changes": ["CHG2001", "CHG2004"], "actor": "ci-bot", "pipeline": {"provider": "github", "run_id": "1041"}}`)
	resp := gateCheckResponse{Decision: core.Allow, DecisionID: "019aef5e-1c2d-7b3e-9f00-0123456789ab", ReleaseID: "payments-api@3.1041.0/production",
		Reasons: []core.Reason{}, EvaluatedAt: time.Now().UTC(), PolicyVersion: 1}
	b.Run("decode/std", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req core.GateRequest
			if err := decodeJSONBytes(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req core.GateRequest
			if !fastGateRequest(body, &req) {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encode/std", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := json.NewEncoder(io.Discard).Encode(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := answerBufs.Get().(*[]byte)
			var err error
			if *buf, err = segjson.Append((*buf)[:0], resp, segjson.EscapeHTML); err != nil {
				b.Fatal(err)
			}
			answerBufs.Put(buf)
		}
	})
}
