package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// readBody reads the whole (already size-limited) body.
func readBody(c *echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, bodyReadError(err)
	}
	return b, nil
}

// bodyReadError says why a body could not be read: over the server's
// limit (413), or cut short (400).
func bodyReadError(err error) error {
	if echo.StatusCode(err) == http.StatusRequestEntityTooLarge {
		return core.Errorf(core.KindTooLarge, "request body is larger than the limit")
	}
	return core.Wrap(core.KindInvalid, err, "could not read the request body")
}

// maxPooledBody caps the buffers bodyBuffers keeps: a rare large delivery
// is read into a buffer that is then dropped, not kept for every request.
const maxPooledBody = 256 << 10

// bodyBuffers are the webhook handler's read buffers, reused across
// deliveries: io.ReadAll grows a fresh buffer from 512 bytes, several
// allocations and copies for every delivery of a few kilobytes.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readPooledBody reads the whole (already size-limited) body, as readBody,
// into a pooled buffer. The bytes are valid until release is called; the
// caller must not let them outlive it.
func readPooledBody(c *echo.Context) (b []byte, release func(), err error) {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	release = func() {
		if buf.Cap() <= maxPooledBody {
			bodyBuffers.Put(buf)
		}
	}
	if n := c.Request().ContentLength; n > 0 && n <= maxPooledBody {
		buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead free to read the end
	}
	if _, err := buf.ReadFrom(c.Request().Body); err != nil {
		release()
		return nil, nil, bodyReadError(err)
	}
	return buf.Bytes(), release, nil
}

// decodeJSON strictly decodes a JSON body into v: unknown fields, trailing
// data and wrong types are 400s naming the field.
func decodeJSON(c *echo.Context, v any) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSONBytes(b, v)
}

// decodeJSONBytes is decodeJSON of a body already read.
func decodeJSONBytes(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return core.Invalid("body", "a JSON body is required")
	}
	if !utf8.Valid(b) {
		// encoding/json would quietly turn the bad bytes into U+FFFD and
		// record a service name nobody sent.
		return core.Invalid("body", "the body is not valid UTF-8")
	}
	if bytes.Contains(b, nulEscape) {
		// Only a body that spells the escape out can hold a NUL (a raw
		// NUL byte in a string is not JSON): what no other body pays for.
		if field, ok := nulField(b); ok {
			return core.Invalid(field, "must not contain a NUL character (\\u0000)")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return core.Invalid("body", "unexpected data after the JSON document")
	}
	return nil
}

// nulEscape is how a JSON text spells U+0000.
var nulEscape = []byte(`\u0000`)

// nulField returns the path of the first string of the JSON text b (a
// value or a member's name) that holds U+0000 — "service",
// "pipeline.run_id", "changes[2]"; "body" for the document itself — and
// ok false when none does (the escape was text: "\\u0000") or b is not
// JSON (the decoder says why). PostgreSQL refuses NUL in text and SQLite
// stores it (a token named with one then broke its every audited write):
// no REST write takes one, so both stores answer alike, with the field.
func nulField(b []byte) (string, bool) {
	type frame struct {
		object  bool
		wantKey bool   // an object's next token is a member name
		key     string // an object's current member
		index   int    // an array's current element
	}
	var stack []*frame
	path := func() string {
		var sb strings.Builder
		for _, f := range stack {
			switch {
			case !f.object:
				fmt.Fprintf(&sb, "[%d]", f.index)
			case sb.Len() > 0:
				sb.WriteString("." + f.key)
			default:
				sb.WriteString(f.key)
			}
		}
		if sb.Len() == 0 {
			return "body"
		}
		return sb.String()
	}
	done := func() { // a value ended: the enclosing object or array moves on
		if n := len(stack); n > 0 {
			if f := stack[n-1]; f.object {
				f.wantKey = true
			} else {
				f.index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if key, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].wantKey = key, false
				if strings.IndexByte(key, 0) >= 0 {
					return path(), true
				}
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{object: t == '{', wantKey: t == '{'})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if strings.IndexByte(t, 0) >= 0 {
				return path(), true
			}
			done()
		default:
			done()
		}
	}
}

func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		tim *time.ParseError
	)
	switch {
	case errors.As(err, &syn):
		return core.Invalid("body", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return core.Invalid(typ.Field, "must be %s, not JSON %s", typ.Type, typ.Value)
	case errors.As(err, &tim):
		return core.Invalid("body", "bad time %q: want RFC 3339, like 2026-11-27T10:00:00Z", tim.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return core.Invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return core.Invalid("body", "truncated JSON")
	}
	return core.Invalid("body", "invalid JSON: %v", err)
}

// gateCheckResponse is the contract's answer shape.
type gateCheckResponse struct {
	Decision      core.Decision `json:"decision"`
	DecisionID    string        `json:"decision_id"`
	ReleaseID     string        `json:"release_id"`
	Reasons       []core.Reason `json:"reasons"`
	EvaluatedAt   time.Time     `json:"evaluated_at"`
	Emergency     bool          `json:"emergency"`
	PolicyVersion int           `json:"policy_version"`
	// WouldBe is set in an environment in observe mode when enforcing
	// would have answered wait or deny (Decision is then allow).
	WouldBe core.Decision `json:"would_be,omitempty"`
	// Evidence is how each evidence requirement was judged.
	Evidence []core.EvidenceMatch `json:"evidence,omitempty"`
}

func (s *Server) gateCheck(c *echo.Context) error {
	var req core.GateRequest
	if err := decodeGateRequest(c, &req); err != nil {
		return err
	}
	var wait time.Duration
	if w := c.QueryParam("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return core.Invalid("wait", "%q is not a duration like 30s or 15m", w)
		}
		wait = d
	}
	d, err := s.deps.Gate.Check(c.Request().Context(), req, actor(c), wait)
	if err != nil {
		return err
	}
	reasons := d.Reasons
	if reasons == nil {
		reasons = []core.Reason{}
	}
	return renderGateCheck(c, gateCheckResponse{
		Decision: d.Decision, DecisionID: d.ID, ReleaseID: d.ReleaseID, Reasons: reasons,
		EvaluatedAt: d.EvaluatedAt, Emergency: d.Emergency, PolicyVersion: d.PolicyVersion,
		WouldBe: d.WouldBe, Evidence: d.Evidence,
	})
}

func (s *Server) getDecision(c *echo.Context) error {
	d, err := s.deps.Reader.GetDecision(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// deploymentRequest is the canonical deployment event body.
type deploymentRequest struct {
	Service     string     `json:"service"`
	Environment string     `json:"environment"`
	Version     string     `json:"version"`
	Commit      string     `json:"commit"`
	Team        string     `json:"team"`
	Status      string     `json:"status"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Actor       string     `json:"actor"`
	Changes     []string   `json:"changes"`
	Incidents   []string   `json:"incidents"`
	DecisionID  string     `json:"decision_id"`
	Provider    string     `json:"provider"`
	RunID       string     `json:"run_id"`
	URL         string     `json:"url"`
}

func (s *Server) postDeployment(c *echo.Context) error {
	var r deploymentRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	d := core.Deployment{
		Service: r.Service, Environment: r.Environment, Version: r.Version, Commit: r.Commit, Team: r.Team,
		Status: r.Status, FinishedAt: r.FinishedAt, Actor: r.Actor, Changes: r.Changes, Incidents: r.Incidents,
		DecisionID: r.DecisionID, Provider: r.Provider, RunID: r.RunID, URL: r.URL, Source: core.SourceAPI,
	}
	if r.StartedAt != nil {
		d.StartedAt = *r.StartedAt
	}
	stored, created, err := s.deps.Deployments.Record(c.Request().Context(), d, actor(c))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, stored)
}

// deploymentStatus checks a deployment status filter ("" is any).
func deploymentStatus(v string) (string, error) {
	if v != "" && !core.ValidDeployStatus(v) {
		return "", core.Invalid("status", "%q is not one of %s", v, strings.Join(core.DeployStatuses(), ", "))
	}
	return v, nil
}

// listFilter reads the common listing query parameters. Records carry
// canonical names, so the environment (an alias, any case) and the
// service (the catalog's spelling) are resolved under the policy in force;
// an environment it no longer lists is taken as the stored records name it
// (service.Policies.HistoryEnvironment), one neither knows is refused,
// not a filter matching nothing.
func (s *Server) listFilter(c *echo.Context) (core.ReleaseFilter, error) {
	f := core.ReleaseFilter{
		Service: c.QueryParam("service"), Environment: c.QueryParam("environment"),
		Team: c.QueryParam("team"), After: c.QueryParam("after"),
	}
	cp := s.deps.Policies.Current()
	var err error
	if f.Environment, f.AlsoEnvironments, err = s.deps.Policies.HistoryEnvironments(c.Request().Context(), cp, "environment", f.Environment); err != nil {
		return f, err
	}
	if f.Service != "" {
		f.Service = cp.Subject(f.Service, "", "").Service
	}
	if f.From, err = queryTime(c, "from"); err != nil {
		return f, err
	}
	if f.To, err = queryTime(c, "to"); err != nil {
		return f, err
	}
	if f.Limit, err = queryLimit(c); err != nil {
		return f, err
	}
	return f, nil
}

func queryTime(c *echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, core.Invalid(name, "%q is not an RFC 3339 time like 2026-11-27T10:00:00Z", v)
	}
	return t, nil
}

// queryBool reads a boolean query parameter: "true" or "false" as the
// contract lists them, absent or empty false. Anything else ("1", "yes")
// is refused: read as false, it answered something the client did not ask
// for.
func queryBool(c *echo.Context, name string) (bool, error) {
	switch v := c.QueryParam(name); v {
	case "true":
		return true, nil
	case "", "false":
		return false, nil
	default:
		return false, core.Invalid(name, "%q is not true or false", v)
	}
}

func queryLimit(c *echo.Context) (int, error) { return queryLimitOr(c, 100) }

// queryLimitOr reads limit, from 1 to 1000, def when absent.
func queryLimitOr(c *echo.Context, def int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, core.Invalid("limit", "must be a number from 1 to 1000")
	}
	return n, nil
}

// page is a listing with the cursor of the next page.
type page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func newPage[T any](items []T, limit int, cursor func(T) string) page[T] {
	if items == nil {
		items = []T{}
	}
	p := page[T]{Items: items}
	if len(items) == limit && limit > 0 {
		p.Next = cursor(items[len(items)-1])
	}
	return p
}

func (s *Server) listReleases(c *echo.Context) error {
	f, err := s.listFilter(c)
	if err != nil {
		return err
	}
	rs, err := s.deps.Reader.ListReleases(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(rs, f.Limit, func(r core.Release) string { return r.ID }))
}

func (s *Server) listDeployments(c *echo.Context) error {
	f, err := s.listFilter(c)
	if err != nil {
		return err
	}
	if f.Status, err = deploymentStatus(c.QueryParam("status")); err != nil {
		return err
	}
	ds, err := s.deps.Reader.ListDeployments(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(ds, f.Limit, func(d core.Deployment) string { return d.ID }))
}

type pirRequest struct {
	Summary string `json:"summary"`
}

func (s *Server) signOffPIR(c *echo.Context) error {
	var r pirRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &r); err != nil {
			return err
		}
	}
	p, err := s.deps.Reviews.SignOff(c.Request().Context(), c.Param("id"), actor(c), r.Summary)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) getChange(c *echo.Context) error {
	ctx := c.Request().Context()
	ch, err := s.deps.Reader.GetChange(ctx, c.Param("key"))
	if err != nil {
		return err
	}
	hist, err := s.deps.Reader.ChangeHistory(ctx, ch.Key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"change": ch, "history": hist})
}

func (s *Server) getIncident(c *echo.Context) error {
	ctx := c.Request().Context()
	in, err := s.deps.Reader.GetIncident(ctx, c.Param("key"))
	if err != nil {
		return err
	}
	hist, err := s.deps.Reader.IncidentHistory(ctx, in.Key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"incident": in, "history": hist})
}

func (s *Server) getPolicy(c *echo.Context) error {
	v, err := s.deps.Policies.Source(c.Request().Context())
	if err != nil {
		return err
	}
	cp := s.deps.Policies.Current()
	if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "yaml") {
		c.Response().Header().Set("X-Policy-Version", strconv.Itoa(v.Version))
		return c.Blob(http.StatusOK, "application/yaml", []byte(v.Source))
	}
	return c.JSON(http.StatusOK, map[string]any{
		"version": v.Version, "created_at": v.CreatedAt, "created_by": v.CreatedBy,
		"policy": cp.Policy(), "source": v.Source,
	})
}

func (s *Server) putPolicy(c *echo.Context) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	if s.deps.Proposals.FourEyes() {
		return s.propose(c, core.ProposalPolicy, "", b)
	}
	cp, err := s.deps.Policies.Put(c.Request().Context(), b, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"version": cp.Version(), "policy": cp.Policy()})
}

func (s *Server) webhook(c *echo.Context) error {
	name := c.Param("connector")
	if err := s.deps.AuthFailures.Refuse(c); err != nil {
		return err
	}
	// Receive returns once the row is stored, or once its delivery is
	// given up before a writer took it, so nothing reads the body after
	// it: the buffer is reused from then on.
	b, release, err := readPooledBody(c)
	if err != nil {
		return err
	}
	defer release()
	// The connector's limit is spent by authenticated deliveries only:
	// unsigned junk is the per-client auth-failure limit's.
	id, dup, err := s.deps.Inbox.Receive(c.Request().Context(), name, c.Request().Header, c.QueryParams(), b,
		func() error { return s.limitConnector(c, name) })
	if err != nil {
		switch {
		case core.IsKind(err, core.KindUnauthorized):
			s.authFailed(c.Request().Context(), c, authWebhookSignature, "")
			s.deps.AuthFailures.Failed(c)
		case core.IsKind(err, core.KindNotFound):
			// No connector of that name: counted as a failed
			// authentication too, so a client posting bodies to invented
			// names is limited as one posting unsigned ones.
			s.authFailed(c.Request().Context(), c, authUnknownConnector, "")
			s.deps.AuthFailures.Failed(c)
		}
		return err
	}
	return c.JSON(http.StatusAccepted, webhookAccepted{Duplicate: dup, EventID: id})
}

// webhookAccepted is a delivery's 202 body. A struct, not a map: encoding
// a map sorts its keys through reflection, a share of the receiver's CPU
// per delivery; the fields are in the order the map's encoding gave them.
type webhookAccepted struct {
	Duplicate bool   `json:"duplicate"`
	EventID   string `json:"event_id"`
}

func (s *Server) listMappings(c *echo.Context) error {
	ms, err := s.deps.Mappings.List(c.Request().Context())
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []core.MappingProfile{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ms})
}

func (s *Server) getMapping(c *echo.Context) error {
	ctx := c.Request().Context()
	m, err := s.deps.Mappings.Get(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	versions, err := queryBool(c, "versions")
	if err != nil {
		return err
	}
	if versions {
		vs, err := s.deps.Mappings.Versions(ctx, m.Name)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"profile": m, "versions": vs})
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) putMapping(c *echo.Context) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	if s.deps.Proposals.FourEyes() {
		return s.propose(c, core.ProposalMapping, c.Param("name"), b)
	}
	m, err := s.deps.Mappings.Put(c.Request().Context(), c.Param("name"), b, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) deleteMapping(c *echo.Context) error {
	if s.deps.Proposals.FourEyes() {
		return s.propose(c, core.ProposalMappingDelete, c.Param("name"), nil)
	}
	if err := s.deps.Mappings.Delete(c.Request().Context(), c.Param("name"), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) previewMapping(c *echo.Context) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Mappings.Preview(c.Request().Context(), c.Param("name"), nil, b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) listEvents(c *echo.Context) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := core.EventFilter{Status: c.QueryParam("status"), Connector: c.QueryParam("connector"), Limit: limit, After: c.QueryParam("after")}
	switch f.Status {
	case "", core.EventPending, core.EventProcessed, core.EventQuarantined, core.EventIgnored:
	default:
		return core.Invalid("status", "%q is not one of pending, processed, quarantined, ignored", f.Status)
	}
	es, err := s.deps.Inbox.ListEvents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	for i := range es { // listings omit bodies; GET /events/{id} has them
		es[i].Body = nil
	}
	return c.JSON(http.StatusOK, newPage(es, limit, func(e core.Event) string { return e.ID }))
}

func (s *Server) getEvent(c *echo.Context) error {
	e, err := s.deps.Inbox.GetEvent(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	// Keep the response valid JSON (and valid UTF-8) whatever was sent:
	// a body that is not valid JSON is shown as text, and one that is not
	// valid UTF-8 also as base64, its exact bytes.
	if raw := e.Body; !json.Valid(raw) || !utf8.Valid(raw) {
		e.Body = nil
		out := map[string]any{"event": e, "body_text": strings.ToValidUTF8(string(raw), "\uFFFD")}
		if !utf8.Valid(raw) {
			out["body_base64"] = base64.StdEncoding.EncodeToString(raw)
		}
		return c.JSON(http.StatusOK, out)
	}
	return c.JSON(http.StatusOK, e)
}

func (s *Server) replayEvent(c *echo.Context) error {
	id := c.Param("id")
	if err := s.deps.Inbox.Replay(c.Request().Context(), id, actor(c)); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"event_id": id, "status": core.EventPending})
}

type replayRequest struct {
	Connector string `json:"connector"`
}

func (s *Server) replayConnector(c *echo.Context) error {
	var r replayRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	if r.Connector == "" {
		return core.Invalid("connector", "is required: replays every quarantined event of that connector")
	}
	n, err := s.deps.Inbox.ReplayQuarantined(c.Request().Context(), r.Connector, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"connector": r.Connector, "replayed": n})
}

type tokenRequest struct {
	Name string    `json:"name"`
	Role core.Role `json:"role"`
}

func (s *Server) createToken(c *echo.Context) error {
	var r tokenRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	secret, t, err := s.deps.Tokens.Create(c.Request().Context(), r.Name, r.Role, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"id": t.ID, "token": secret, "name": t.Name, "role": t.Role, "created_at": t.CreatedAt})
}

func (s *Server) listTokens(c *echo.Context) error {
	ts, err := s.deps.Tokens.List(c.Request().Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []core.Token{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ts})
}

func (s *Server) revokeToken(c *echo.Context) error {
	if err := s.deps.Tokens.Revoke(c.Request().Context(), c.Param("id"), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listAudit(c *echo.Context) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := core.AuditFilter{Limit: limit, Subject: c.QueryParam("subject"), Action: c.QueryParam("action")}
	if v := c.QueryParam("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return core.Invalid("after", "must be a row number (the seq of the last row of the previous page)")
		}
		f.AfterSeq = n
	}
	rows, err := s.deps.Reader.ListAudit(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(rows, limit, func(e core.AuditEntry) string { return fmt.Sprint(e.Seq) }))
}

// verifyAudit walks the chain and every gate decision; with expect_head
// (a head kept outside the database, HASH or SEQ:HASH) the chain must
// reach it, so a chain cut short or rewritten from the tail is found.
func (s *Server) verifyAudit(c *echo.Context) error {
	head, err := core.ParseAuditHead(strings.TrimSpace(c.QueryParam("expect_head")))
	if err != nil {
		return core.Invalid("expect_head", "%v", err)
	}
	brk, n, err := s.deps.Reader.VerifyAuditTo(c.Request().Context(), head)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"ok": brk == nil, "rows": n, "break": brk})
}

// auditHead answers the chain's head: kept outside the database, it is
// what `tollgate audit verify --expect-head` holds the chain to.
func (s *Server) auditHead(c *echo.Context) error {
	head, err := s.deps.Reader.AuditHead(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, head)
}

// doctorReport is GET /api/v1/doctor's answer.
type doctorReport struct {
	Sections []connectors.Section `json:"sections"`
	Failed   int                  `json:"failed"`
	Warnings int                  `json:"warnings"`
}

// doctor runs tollgate doctor's read-only checks of the database and each
// connector's system, as the CLI does (admin only: the findings describe
// the integration's set-up).
func (s *Server) doctor(c *echo.Context) error {
	sections := s.deps.Doctor.CheckConnectors(c.Request().Context())
	failed, warnings := connectors.Count(sections)
	return c.JSON(http.StatusOK, doctorReport{Sections: sections, Failed: failed, Warnings: warnings})
}

// replicas is GET /api/v1/replicas: every replica the database knows,
// the live ones and those stopped without a word within the last day.
func (s *Server) replicas(c *echo.Context) error {
	reps, err := s.deps.Replicas.Replicas(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": reps})
}
