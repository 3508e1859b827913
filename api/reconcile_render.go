package api

import (
	"bufio"
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// findingWalker calls fn with each finding of a report, in order.
type findingWalker func(fn func(core.ReconcileFinding) error) error

// proofWalker walks a report's control proofs in order.
type proofWalker func(fn func(core.ControlProof) error) error

// writeReportJSON streams {"report", "findings"} and, for a report filtered
// by a control (proofs not nil), "proofs": the compliant deployments'
// evidence for that control. One finding in memory at a time.
func writeReportJSON(w io.Writer, r core.Report, walk findingWalker, proofs proofWalker) error {
	bw := bufio.NewWriter(w)
	head, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, "{\"report\":%s,\"findings\":", head)
	if err := writeJSONArray(bw, walk); err != nil {
		return err
	}
	if proofs != nil {
		bw.WriteString(`,"proofs":`)
		if err := writeJSONArray(bw, proofs); err != nil {
			return err
		}
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// writeJSONArray writes the items walk yields as one JSON array, one item
// in memory at a time.
func writeJSONArray[T any](bw *bufio.Writer, walk func(fn func(T) error) error) error {
	bw.WriteByte('[')
	first := true
	err := walk(func(item T) error {
		b, err := json.Marshal(item)
		if err != nil {
			return err
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.Write(b)
		return nil
	})
	if err != nil {
		return err
	}
	return bw.WriteByte(']')
}

// csvHeader is the CSV export's header row: one finding a row.
var csvHeader = []string{
	"finding_id", "code", "severity", "message", "ref", "change_key", "change_version", "remediation",
	"deployment_id", "service", "environment", "version", "commit", "team", "status", "started_at", "finished_at",
	"actor", "provider", "run_id", "url",
	"requested_by", "approvals", "decision_id", "decision", "decision_at", "decision_reasons",
	"acknowledged", "acknowledged_by", "acknowledged_at", "acknowledgement_comment",
}

// spreadsheetSafe neutralises a cell a spreadsheet would read as a formula
// (leading =, +, -, @, tab or carriage return) by prefixing a quote, the
// OWASP CSV-injection advice.
func spreadsheetSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

// approvalsText lists a finding's approvals: "KEY vN: who decision at; …".
func approvalsText(l core.Lineage) (requested, approvals string) {
	var req, appr []string
	for _, c := range l.Changes {
		if c.RequestedBy != "" {
			req = append(req, c.Key+": "+c.RequestedBy)
		}
		for _, a := range c.Approvals {
			s := fmt.Sprintf("%s v%d: %s %s", c.Key, c.Version, a.Approver, a.Decision)
			if a.At != nil {
				s += " at " + fmtTime(*a.At)
			}
			appr = append(appr, s)
		}
	}
	return strings.Join(req, "; "), strings.Join(appr, "; ")
}

func reasonsText(rs []core.Reason) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, r.Code+": "+r.Message)
	}
	return strings.Join(parts, "; ")
}

// writeReportCSV streams the findings as RFC 4180 CSV with a header row.
func writeReportCSV(w io.Writer, walk findingWalker) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	err := walk(func(f core.ReconcileFinding) error {
		req, appr := approvalsText(f.Lineage)
		var decID, dec, decAt, decReasons string
		if g := f.Lineage.Decision; g != nil {
			decID, dec, decAt, decReasons = g.ID, string(g.Decision), fmtTime(g.EvaluatedAt), reasonsText(g.Reasons)
		}
		acked, ackBy, ackAt, ackComment := "no", "", "", ""
		if f.Ack != nil {
			acked, ackBy, ackAt, ackComment = "yes", f.Ack.By, fmtTime(f.Ack.At), f.Ack.Comment
		}
		version := ""
		if f.ChangeVersion > 0 {
			version = strconv.Itoa(f.ChangeVersion)
		}
		d := f.Deployment
		row := []string{
			strconv.Itoa(f.ID), f.Code, f.Severity, f.Message, f.Ref, f.ChangeKey, version, f.Remediation,
			d.ID, d.Service, d.Environment, d.Version, d.Commit, d.Team, d.Status, fmtTime(d.StartedAt), fmtTimePtr(d.FinishedAt),
			d.Actor, d.Provider, d.RunID, d.URL,
			req, appr, decID, dec, decAt, decReasons,
			acked, ackBy, ackAt, ackComment,
		}
		for i := range row {
			row[i] = spreadsheetSafe(row[i])
		}
		return cw.Write(row)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

//go:embed templates/report.html
var templateFS embed.FS

var reportTemplate = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"time":    fmtTime,
	"timeptr": fmtTimePtr,
}).ParseFS(templateFS, "templates/report.html"))

// findingGroup heads the findings of one code in the HTML report.
type findingGroup struct {
	Code        string
	Remediation string
	Count       int
}

// codeWalker calls fn with each finding of a report with one code, in
// order.
type codeWalker func(code string, fn func(core.ReconcileFinding) error) error

type countRow struct {
	Name  string
	Count int
}

func sortedCounts(m map[string]int) []countRow {
	out := make([]countRow, 0, len(m))
	for k, v := range m {
		out = append(out, countRow{k, v})
	}
	slices.SortFunc(out, func(a, b countRow) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// writeReportHTML renders the printable report: summary, then the findings
// grouped by code (in code order, each group in finding order) with their
// deployment, lineage and acknowledgement. It streams: a group's findings
// are read and written one at a time, so memory does not grow with the
// report.
func writeReportHTML(w io.Writer, r core.Report, walk codeWalker) error {
	byCode := sortedCounts(r.Summary.ByCode)
	if err := reportTemplate.ExecuteTemplate(w, "head", map[string]any{
		"Report": r, "ByCode": byCode, "BySeverity": sortedCounts(r.Summary.BySeverity),
	}); err != nil {
		return err
	}
	groups := 0
	for _, c := range byCode {
		if c.Count == 0 {
			continue
		}
		groups++
		if err := reportTemplate.ExecuteTemplate(w, "group", findingGroup{Code: c.Name, Remediation: core.Remediation(c.Name), Count: c.Count}); err != nil {
			return err
		}
		if err := walk(c.Name, func(f core.ReconcileFinding) error { return reportTemplate.ExecuteTemplate(w, "finding", f) }); err != nil {
			return err
		}
	}
	if groups == 0 {
		if err := reportTemplate.ExecuteTemplate(w, "none", nil); err != nil {
			return err
		}
	}
	return reportTemplate.ExecuteTemplate(w, "foot", nil)
}
