package inert

import "testing"

func TestLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"octocat", "octocat"},
		{"ci\nApproved by change manager", "ci Approved by change manager"},
		{"a\r\nb\tc\x00d\x1b[31m", "a  b c d [31m"},
		{"x\u2028y\u2029z", "x y z"},
		{"evil\u202Egnp.exe", "evil gnp.exe"},
		{"\u2066rtl\u2069", " rtl "},
		{"unicode ü ok", "unicode ü ok"},
	} {
		if got := Line(tc.in); got != tc.want {
			t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestServiceNow(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[code]<img src=x onerror=alert(1)>[/code]", "(code)<img src=x onerror=alert(1)>(/code)"},
		{"[CODE]x[ / Code ]", "(CODE)x( / Code )"},
		{"[EMERGENCY] tollgate: deployment", "[EMERGENCY] tollgate: deployment"},
		{"plain", "plain"},
	} {
		if got := ServiceNow(tc.in); got != tc.want {
			t.Errorf("ServiceNow(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJiraWiki(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[~accountid:5b10] please approve [here|https://evil/a] !https://evil/p.png!", `\[~accountid:5b10\] please approve \[here\|https://evil/a\] \!https://evil/p.png\!`},
		{"{html}<b>x</b>{html}", `\{html\}<b>x</b>\{html\}`},
		{`a\[b`, "a\u29F5\\[b"}, // never two backslashes: Jira's forced line break
		{`bot \\Approved by CAB`, "bot \u29F5\u29F5Approved by CAB"},
		{"Run: https://ci.example.com/acme/payments/-/jobs/42?x=1#L3", "Run: https://ci.example.com/acme/payments/-/jobs/42?x=1#L3"},
	} {
		if got := JiraWiki(tc.in); got != tc.want {
			t.Errorf("JiraWiki(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
