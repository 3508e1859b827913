package api

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestReportHTMLStreamsByCode: the printable report asks for each code's
// findings once, in code order, writes every finding once under its code's
// heading (with the count from the summary), and says so when there is
// none.
func TestReportHTMLStreamsByCode(t *testing.T) {
	codes := []string{core.CodeNoChange, core.CodeGateBypassed, core.CodeIncidentBlock}
	var all []core.ReconcileFinding
	for i := range 9 {
		all = append(all, core.ReconcileFinding{ID: i + 1, Code: codes[i%3], Severity: core.SeverityHigh, Message: fmt.Sprintf("finding <%d>", i+1)})
	}
	for _, tc := range []struct {
		name     string
		findings []core.ReconcileFinding
	}{{"nine findings of three codes", all}, {"none", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			r := core.Report{ID: "r1", Summary: core.NewReconcileSummary(), CreatedAt: time.Unix(0, 0).UTC()}
			r.Summary.Add(tc.findings)
			var asked []string
			walk := func(code string, fn func(core.ReconcileFinding) error) error {
				asked = append(asked, code)
				for _, f := range tc.findings {
					if f.Code == code {
						if err := fn(f); err != nil {
							return err
						}
					}
				}
				return nil
			}
			var b strings.Builder
			if err := writeReportHTML(&b, r, walk); err != nil {
				t.Fatal(err)
			}
			html := b.String()
			want := slices.Sorted(slices.Values(codesOf(tc.findings)))
			if !slices.Equal(asked, want) {
				t.Fatalf("asked for codes %v, want each once in order %v", asked, want)
			}
			for _, f := range tc.findings {
				if n := strings.Count(html, fmt.Sprintf(`id="finding-%d"`, f.ID)); n != 1 {
					t.Errorf("finding %d written %d times", f.ID, n)
				}
				if !strings.Contains(html, fmt.Sprintf("finding &lt;%d&gt;", f.ID)) {
					t.Errorf("finding %d's message is missing or not escaped", f.ID)
				}
			}
			heads := regexp.MustCompile(`<h2 id="code-([A-Z_]+)">([A-Z_]+) \((\d+)\)</h2>`).FindAllStringSubmatch(html, -1)
			if len(heads) != len(want) {
				t.Fatalf("%d code headings, want %d", len(heads), len(want))
			}
			for i, h := range heads {
				if h[1] != want[i] || h[3] != fmt.Sprint(r.Summary.ByCode[h[1]]) {
					t.Errorf("heading %v, want %s with %d", h[0], want[i], r.Summary.ByCode[want[i]])
				}
			}
			if none := strings.Contains(html, "No findings"); none != (len(tc.findings) == 0) {
				t.Errorf("the no-findings line shown: %v, with %d findings", none, len(tc.findings))
			}
			if !strings.HasSuffix(strings.TrimSpace(html), "</html>") {
				t.Errorf("the page is not closed")
			}
		})
	}
}

func codesOf(fs []core.ReconcileFinding) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f.Code) {
			out = append(out, f.Code)
		}
	}
	return out
}
