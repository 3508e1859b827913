package hooktest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
)

// Want is a finding a preflight test expects: its check and status, and a
// part of its detail.
type Want struct {
	Check  string
	Status connectors.Status
	Detail string
}

// CheckFindings compares a preflight's findings with want, in order, and
// fails the test when a detail holds any of secrets.
func CheckFindings(t testing.TB, got []connectors.Finding, want []Want, secrets ...string) {
	t.Helper()
	var lines []string
	for _, f := range got {
		lines = append(lines, fmt.Sprintf("%s|%s|%s", f.Check, f.Status, f.Detail))
		for _, s := range secrets {
			if s != "" && strings.Contains(f.Detail, s) {
				t.Errorf("finding %s holds a secret (%q): %s", f.Check, s, f.Detail)
			}
		}
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Check == want[i].Check && got[i].Status == want[i].Status && strings.Contains(got[i].Detail, want[i].Detail)
	}
	if !ok {
		var wl []string
		for _, w := range want {
			wl = append(wl, fmt.Sprintf("%s|%s|…%s…", w.Check, w.Status, w.Detail))
		}
		t.Errorf("findings\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(wl, "\n"))
	}
}

// Wants reads findings written "check|status|part of the detail".
func Wants(lines ...string) []Want {
	out := make([]Want, len(lines))
	for i, l := range lines {
		parts := strings.SplitN(l, "|", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		out[i] = Want{Check: parts[0], Status: connectors.Status(parts[1]), Detail: parts[2]}
	}
	return out
}

// Reply is a fake API's answer to one path in a preflight test: Status
// (200 when 0; HangUp: the connection is closed without an answer) and
// Body.
type Reply struct {
	Status int
	Body   string
}

// HangUp is the Reply status of a connection closed without an answer.
const HangUp = -1

// Write sends r on w.
func (r Reply) Write(w http.ResponseWriter) {
	if r.Status == HangUp {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	if r.Status != 0 {
		w.WriteHeader(r.Status)
	}
	_, _ = w.Write([]byte(r.Body))
}
