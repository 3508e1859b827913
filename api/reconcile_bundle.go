package api

import (
	"bytes"
	"context"
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
// file, signed (MANIFEST.sig) when the server has a signing key. `tollgate
// audit verify --bundle FILE --public-key KEY` checks it offline.
//
// The archive is streamed: a report over a million deployments has tens
// of thousands of findings, and neither they nor the compressed archive
// are held whole (one rendered file at a time is, since a tar header
// carries its file's size). What can be refused with a status — the
// report, the ids of the records its findings name, the audit slice and
// head — is read before the first byte; the records themselves are read
// as they are written. A failure after the first byte aborts the
// connection, and the archive ends without its manifest, which `audit
// verify` refuses.
//
// The findings are read several times (their references, then each
// format), and a change manager may acknowledge one meanwhile. The bundle
// is as of the audit head it records, read first: audit.json holds the
// rows up to it, and every file shows the acknowledgements whose audit
// rows it holds (an acknowledgement and its row commit together), no
// later one; the summary counts those.
func (s *Server) reportBundle(c *echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	head, err := s.deps.Reader.AuditHead(ctx)
	if err != nil {
		return err
	}
	rep, err := s.deps.Reports.Get(ctx, id)
	if err != nil {
		return err
	}
	refs, err := findingRefs(func(fn func(core.ReconcileFinding) error) error { return s.deps.Reports.Findings(ctx, id, fn) })
	if err != nil {
		return err
	}
	audit, err := s.auditSlice(c, rep.ID, head.Seq, refs)
	if err != nil {
		return err
	}
	acked := ackedIn(audit, rep.ID)
	rep.Summary.Acknowledged = len(acked)
	asOfHead := func(fn func(core.ReconcileFinding) error) func(core.ReconcileFinding) error {
		return func(f core.ReconcileFinding) error {
			if f.Ack != nil && !acked[f.ID] {
				f.Ack = nil // acknowledged after the head: not in this bundle's audit.json
			}
			return fn(f)
		}
	}
	walk := func(fn func(core.ReconcileFinding) error) error {
		return s.deps.Reports.Findings(ctx, id, asOfHead(fn))
	}
	var proofs proofWalker
	if rep.Query.Control != "" {
		proofs = func(fn func(core.ControlProof) error) error { return s.deps.Reports.Proofs(ctx, id, fn) }
	}

	resp := c.Response()
	resp.Header().Set(echo.HeaderContentDisposition, `attachment; filename="reconciliation-`+rep.ID+`.tar.gz"`)
	resp.Header().Set(echo.HeaderContentType, "application/gzip")
	resp.WriteHeader(http.StatusOK)
	bw := bundle.NewWriter(resp, s.deps.Clock.Now())
	bw.Sign(s.deps.EvidenceKeys.Signing)
	ofCode := func(code string, fn func(core.ReconcileFinding) error) error {
		return s.deps.Reports.FindingsOfCode(ctx, id, code, asOfHead(fn))
	}
	err = addReportFiles(bw, rep, walk, ofCode, proofs)
	if err == nil {
		err = s.addRecordFiles(ctx, bw, refs)
	}
	if err == nil {
		err = bw.AddJSON(bundle.AuditName, audit)
	}
	if err == nil {
		err = bw.Close(bundle.Manifest{ReportID: rep.ID, AuditHead: &head})
	}
	if err != nil {
		s.abortStream(c, "evidence bundle of report "+rep.ID, err)
	}
	return nil
}

// idSet is a list of distinct ids in the order first seen.
type idSet struct {
	list []string
	seen map[string]bool
}

func (s *idSet) add(v string) {
	if v == "" || s.seen[v] {
		return
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[v] = true
	s.list = append(s.list, v)
}

// bundleRefs are the records a report's findings name: relinked are the
// deployments of LINKS_CHANGED_AFTER_DEPLOY findings, whose
// deployment.links audit rows say who changed their links and from what.
type bundleRefs struct {
	decisions, releases, changes, incidents, relinked idSet
}

// findingRefs walks the findings once for the records they name.
func findingRefs(walk findingWalker) (*bundleRefs, error) {
	var r bundleRefs
	err := walk(func(f core.ReconcileFinding) error {
		if d := f.Lineage.Decision; d != nil {
			r.decisions.add(d.ID)
			r.releases.add(d.ReleaseID)
		}
		for _, ch := range f.Lineage.Changes {
			r.changes.add(ch.Key)
		}
		switch f.Code {
		case core.CodeIncidentBlock:
			r.incidents.add(f.Ref)
		case core.CodeLinksChangedAfterDeploy:
			r.relinked.add(f.Deployment.ID)
		}
		return nil
	})
	return &r, err
}

// addReportFiles writes the report as JSON, CSV and HTML; ofCode walks
// the findings of one code (the HTML renders a code at a time).
func addReportFiles(bw *bundle.Writer, rep core.Report, walk findingWalker, ofCode codeWalker, proofs proofWalker) error {
	for _, r := range []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"report.json", func(b *bytes.Buffer) error { return writeReportJSON(b, rep, walk, proofs) }},
		{"report.csv", func(b *bytes.Buffer) error { return writeReportCSV(b, walk) }},
		{"report.html", func(b *bytes.Buffer) error { return writeReportHTML(b, rep, ofCode) }},
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
// histories of the changes and incidents they name.
func (s *Server) addRecordFiles(ctx context.Context, bw *bundle.Writer, refs *bundleRefs) error {
	for _, dID := range refs.decisions.list {
		d, err := s.deps.Reader.GetDecision(ctx, dID)
		if err != nil {
			return err
		}
		if err := bw.AddJSON(bundleFileName("decisions", dID), d); err != nil {
			return err
		}
	}
	for _, key := range refs.changes.list {
		h, err := s.deps.Reader.ChangeHistory(ctx, key)
		if err != nil {
			return err
		}
		if err := bw.AddJSON(bundleFileName("changes", key), h); err != nil {
			return err
		}
	}
	for _, key := range refs.incidents.list {
		h, err := s.deps.Reader.IncidentHistory(ctx, key)
		if core.IsKind(err, core.KindNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := bw.AddJSON(bundleFileName("incidents", key), h); err != nil {
			return err
		}
	}
	return nil
}

// auditSlice gathers the audit rows up to seq head of the report (its
// creation and acknowledgements), of the gate decisions it relied on and
// of the link changes of its LINKS_CHANGED_AFTER_DEPLOY deployments
// (deployment.links), in sequence order.
func (s *Server) auditSlice(c *echo.Context, reportID string, head int64, refs *bundleRefs) ([]core.AuditEntry, error) {
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
				if r.Seq > head {
					return nil // appended after the bundle's head
				}
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
	all := func(core.AuditEntry) bool { return true }
	if err := collect(core.AuditFilter{Subject: "report:" + reportID}, all); err != nil {
		return nil, err
	}
	for _, rel := range refs.releases.list {
		err := collect(core.AuditFilter{Subject: "release:" + rel, Action: "gate.decision"}, func(e core.AuditEntry) bool {
			var d struct {
				DecisionID string `json:"decision_id"`
			}
			return json.Unmarshal(e.Data, &d) == nil && refs.decisions.seen[d.DecisionID]
		})
		if err != nil {
			return nil, err
		}
	}
	for _, dep := range refs.relinked.list {
		if err := collect(core.AuditFilter{Subject: "deployment:" + dep, Action: core.ActionDeploymentLinks}, all); err != nil {
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

// ackedIn returns the findings of report reportID whose acknowledgement
// is among the audit rows.
func ackedIn(rows []core.AuditEntry, reportID string) map[int]bool {
	acked := map[int]bool{}
	for _, e := range rows {
		if e.Action != core.ActionFindingAck || e.Subject != "report:"+reportID {
			continue
		}
		var d struct {
			Finding int `json:"finding"`
		}
		if json.Unmarshal(e.Data, &d) == nil && d.Finding > 0 {
			acked[d.Finding] = true
		}
	}
	return acked
}
