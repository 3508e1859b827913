// Package apitest holds the tests' HTTP traffic to the OpenAPI contract
// (api/openapi.yaml). Its Transport sits in the HTTP client the
// end-to-end tests use: every request they send and every response they
// receive is validated against the document with kin-openapi's
// openapi3filter, so a response field, a status or a route that the
// document does not describe fails the test that met it.
//
// The rules, per exchange:
//   - a request to no documented operation must be answered 404 or 405
//     with the error shape;
//   - a request the document rejects (wrong body, missing credentials …)
//     must be answered with a 4xx: a server that accepts what its contract
//     forbids is out of contract just as much as one that answers
//     something undocumented;
//   - every response must match a documented status and its schema
//     exactly (the document's objects admit no undeclared properties).
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks HTTP exchanges against one OpenAPI document.
type Validator struct {
	router routers.Router
	errSch *openapi3.Schema
}

// New builds a Validator for doc.
func New(doc *openapi3.T) (*Validator, error) {
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	es := doc.Components.Schemas["Error"]
	if es == nil || es.Value == nil {
		return nil, errors.New("the OpenAPI document has no Error schema")
	}
	// Bodies kin-openapi does not decode by default: HTML pages (the
	// reference, a report), gzip archives (a report's bundle) and NDJSON
	// streams (a policy simulation).
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/gzip", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
	return &Validator{router: r, errSch: es.Value}, nil
}

// Transport wraps base (nil: http.DefaultTransport); every exchange through
// it is checked and each breach is passed to report (t.Errorf in tests).
func (v *Validator) Transport(base http.RoundTripper, report func(format string, args ...any)) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper{v: v, base: base, report: report}
}

// maxValidatedBody bounds the request bodies validated: twice the
// server's default body limit.
const maxValidatedBody = 2 << 20

type roundTripper struct {
	v      *Validator
	base   http.RoundTripper
	report func(string, ...any)
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxValidatedBody+1))
		if err != nil {
			req.Body.Close()
			return nil, err
		}
		if len(b) > maxValidatedBody {
			// Past any body the server accepts (it answers 413): sent on
			// as the stream it is, not validated, so the test's process
			// does not hold what the server is careful not to.
			req.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
			return rt.base.RoundTrip(req)
		}
		req.Body.Close()
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err != nil {
		return resp, nil //nolint:nilerr // the caller sees the short body; a broken connection is not a contract matter
	}
	if problem := rt.v.Check(req, reqBody, resp.StatusCode, resp.Header, respBody); problem != nil {
		rt.report("%s %s → %d: out of the OpenAPI contract (api/openapi.yaml): %v\nresponse body: %s",
			req.Method, req.URL.RequestURI(), resp.StatusCode, problem, clip(respBody))
	}
	return resp, nil
}

func clip(b []byte) string {
	const max = 2000
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// IsWebUI reports whether path is one of the web UI's pages (/ui and
// below): HTML for people, signed in by session cookie, which the API
// contract does not describe (docs/ui.md does, and the UI's own tests
// hold it).
func IsWebUI(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// Check validates one exchange and returns what is out of contract, or nil.
func (v *Validator) Check(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	if status == http.StatusRequestHeaderFieldsTooLarge {
		// Refused by net/http before any route ran: not the API's answer.
		return nil
	}
	if IsWebUI(req.URL.Path) {
		return nil
	}
	ctx := context.Background()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
		// A body sent without a Content-Type (webhook senders that give
		// none) is read as JSON, as the server reads it.
		r.Header.Set("Content-Type", "application/json")
	}
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("no documented operation (%w), yet the server answered %d", err, status)
		}
		return v.checkError(respBody)
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:  authenticate,
		SkipSettingDefaults: true,
		MultiError:          true,
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && (status < 400 || status >= 500) {
		return fmt.Errorf("the document rejects this request, yet the server answered %d: %w", status, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	return nil
}

// checkError validates the answer to an undocumented route: the error shape.
func (v *Validator) checkError(body []byte) error {
	var val any
	if err := json.Unmarshal(body, &val); err != nil {
		return fmt.Errorf("an error answer that is not JSON: %w", err)
	}
	if err := v.errSch.VisitJSON(val, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("an error answer that is not the Error schema: %w", err)
	}
	return nil
}

// authenticate checks that the credentials a security scheme asks for are
// present in the form it names; whether they are right is the server's
// business (and a test's, when it sends wrong ones).
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch s.Type {
	case "http":
		prefix := s.Scheme + " "
		h := r.Header.Get("Authorization")
		if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
			return fmt.Errorf("no Authorization: %s credentials", s.Scheme)
		}
	case "apiKey":
		switch s.In {
		case "header":
			if r.Header.Get(s.Name) == "" {
				return fmt.Errorf("no %s header", s.Name)
			}
		case "query":
			if r.URL.Query().Get(s.Name) == "" {
				return fmt.Errorf("no ?%s=", s.Name)
			}
		default:
			return fmt.Errorf("apiKey in %s is not checked", s.In)
		}
	default:
		return fmt.Errorf("security scheme type %s is not checked", s.Type)
	}
	return nil
}
