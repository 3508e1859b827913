package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// unsafeFileChars are replaced in record keys used as bundle file names.
var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func bundleFileName(dir, key string) string {
	return dir + "/" + unsafeFileChars.ReplaceAllString(key, "_") + ".json"
}

// reportBundle answers the auditor evidence bundle of a report (tar.gz):
// the report as JSON, CSV and HTML; every gate decision its findings
// relied on; the version history of every change and incident they name;
// the audit-trail rows of the report, its acknowledgements and those
// decisions, with their hashes; and MANIFEST.json with the SHA-256 of each
// file. `tollgate audit verify --bundle FILE` checks it offline.
func (s *Server) reportBundle(c *echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	rep, err := s.deps.Reports.Get(ctx, id)
	if err != nil {
		return err
	}
	var findings []core.ReconcileFinding
	if err := s.deps.Reports.Findings(ctx, id, func(f core.ReconcileFinding) error {
		findings = append(findings, f)
		return nil
	}); err != nil {
		return err
	}
	walk := func(fn func(core.ReconcileFinding) error) error {
		for _, f := range findings {
			if err := fn(f); err != nil {
				return err
			}
		}
		return nil
	}
	var buf bytes.Buffer
	bw := bundle.NewWriter(&buf, s.deps.Clock.Now())
	var proofs proofWalker
	if rep.Query.Control != "" {
		proofs = func(fn func(core.ControlProof) error) error { return s.deps.Reports.Proofs(ctx, id, fn) }
	}
	if err := addReportFiles(bw, rep, walk, proofs); err != nil {
		return err
	}
	decisions, releases, err := s.addRecordFiles(c, bw, findings)
	if err != nil {
		return err
	}
	audit, err := s.auditSlice(c, rep.ID, releases, decisions)
	if err != nil {
		return err
	}
	if err := bw.AddJSON(bundle.AuditName, audit); err != nil {
		return err
	}
	head, err := s.deps.Reader.AuditHead(ctx)
	if err != nil {
		return err
	}
	if err := bw.Close(bundle.Manifest{ReportID: rep.ID, AuditHead: &head}); err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentDisposition, `attachment; filename="reconciliation-`+rep.ID+`.tar.gz"`)
	return c.Blob(http.StatusOK, "application/gzip", buf.Bytes())
}

// addReportFiles writes the report as JSON, CSV and HTML.
func addReportFiles(bw *bundle.Writer, rep core.Report, walk findingWalker, proofs proofWalker) error {
	for _, r := range []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"report.json", func(b *bytes.Buffer) error { return writeReportJSON(b, rep, walk, proofs) }},
		{"report.csv", func(b *bytes.Buffer) error { return writeReportCSV(b, walk) }},
		{"report.html", func(b *bytes.Buffer) error {
			return writeReportHTML(b, rep, func(code string, fn func(core.ReconcileFinding) error) error {
				return walk(func(f core.ReconcileFinding) error {
					if f.Code != code {
						return nil
					}
					return fn(f)
				})
			})
		}},
	} {
		var b bytes.Buffer
		if err := r.render(&b); err != nil {
			return err
		}
		if err := bw.Add(r.name, b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// addRecordFiles writes the gate decisions the findings relied on and the
// histories of the changes and incidents they name, and returns the
// decisions' and their releases' ids.
func (s *Server) addRecordFiles(c *echo.Context, bw *bundle.Writer, findings []core.ReconcileFinding) (decisions, releases []string, err error) {
	ctx := c.Request().Context()
	var changes, incidents []string
	add := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, f := range findings {
		if d := f.Lineage.Decision; d != nil {
			add(&decisions, d.ID)
			add(&releases, d.ReleaseID)
		}
		for _, ch := range f.Lineage.Changes {
			add(&changes, ch.Key)
		}
		if f.Code == core.CodeIncidentBlock {
			add(&incidents, f.Ref)
		}
	}
	for _, dID := range decisions {
		d, err := s.deps.Reader.GetDecision(ctx, dID)
		if err != nil {
			return nil, nil, err
		}
		if err := bw.AddJSON(bundleFileName("decisions", dID), d); err != nil {
			return nil, nil, err
		}
	}
	for _, key := range changes {
		h, err := s.deps.Reader.ChangeHistory(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		if err := bw.AddJSON(bundleFileName("changes", key), h); err != nil {
			return nil, nil, err
		}
	}
	for _, key := range incidents {
		h, err := s.deps.Reader.IncidentHistory(ctx, key)
		if core.IsKind(err, core.KindNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if err := bw.AddJSON(bundleFileName("incidents", key), h); err != nil {
			return nil, nil, err
		}
	}
	return decisions, releases, nil
}

// auditSlice gathers the audit rows of the report (its creation and
// acknowledgements) and of the gate decisions it relied on, in sequence
// order.
func (s *Server) auditSlice(c *echo.Context, reportID string, releases, decisions []string) ([]core.AuditEntry, error) {
	ctx := c.Request().Context()
	var out []core.AuditEntry
	collect := func(f core.AuditFilter, keep func(core.AuditEntry) bool) error {
		f.Limit = 1000
		for {
			rows, err := s.deps.Reader.ListAudit(ctx, f)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if keep(r) {
					out = append(out, r)
				}
			}
			if len(rows) < f.Limit {
				return nil
			}
			f.AfterSeq = rows[len(rows)-1].Seq
		}
	}
	if err := collect(core.AuditFilter{Subject: "report:" + reportID}, func(core.AuditEntry) bool { return true }); err != nil {
		return nil, err
	}
	for _, rel := range releases {
		err := collect(core.AuditFilter{Subject: "release:" + rel, Action: "gate.decision"}, func(e core.AuditEntry) bool {
			var d struct {
				DecisionID string `json:"decision_id"`
			}
			return json.Unmarshal(e.Data, &d) == nil && slices.Contains(decisions, d.DecisionID)
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b core.AuditEntry) int { return int(a.Seq - b.Seq) })
	out = slices.CompactFunc(out, func(a, b core.AuditEntry) bool { return a.Seq == b.Seq })
	if out == nil {
		out = []core.AuditEntry{}
	}
	return out, nil
}
