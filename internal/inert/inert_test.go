package inert

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

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

// plain is what a CommonMark renderer shows of Markdown's output, as text:
// escapes undone, hard breaks as line breaks, zero width spaces (which show
// as nothing) gone.
func plain(m string) string {
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		if m[i] == '\\' && i+1 < len(m) && (asciiPunct(m[i+1]) || m[i+1] == '\n') {
			i++
		}
		b.WriteByte(m[i])
	}
	return strings.ReplaceAll(b.String(), zwsp, "")
}

func TestMarkdown(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"reason", "CHANGE_NOT_APPROVED: CHG0097001 is not approved (state requested)",
			"CHANGE_NOT_APPROVED: CHG0097001 is not approved (state requested)"},
		{"words", "tollgate allow", "tollgate allow"},
		{"mention", "ping @octocat now", "ping \\@\u200Boctocat now"},
		{"team mention", "cc @acme/admins", "cc \\@\u200Bacme/admins"},
		{"email", "ops@example.com", "ops\\@\u200Bexample.com"},
		{"lone sigil", "50 @ 3 and 100% #", `50 \@ 3 and 100\% \#`},
		{"image", "![x](https://evil/pixel)", "\\!\u200B\\[x\\](https\\:\u200B//evil/pixel)"},
		{"link", "[click](https://evil)", "\\[click\\](https\\:\u200B//evil)"},
		{"bare url", "see https://evil.example/login", "see https\\:\u200B//evil.example/login"},
		{"www", "see www.evil.example", "see www\u200B\\.evil.example"},
		{"html", `<img src=x onerror=alert(1)><details>`, `\<img src=x onerror=alert(1)\>\<details\>`},
		{"entity", "&#64;octocat &amp;", "\\&\u200B\\#\u200B64;octocat \\&\u200Bamp;"},
		{"issue", "fixes #123", "fixes \\#\u200B123"},
		{"cross-repo issue", "acme/api#1", "acme/api\\#\u200B1"},
		{"GH ref", "GH-123 and gh-9", "GH-\u200B123 and gh-\u200B9"},
		{"jira key stays", "PROJ-123", "PROJ-123"},
		{"decision id", "tollgate: deny (decision 0190f3a4-7b1c-7d2e-9f00-123456789abc)", "tollgate: deny (decision 0190f3a4-7b1c-7d2e-9f00-123456789abc)"},
		{"line start", "(x) 'y'", "\\(x) 'y'"},
		{"ordered list", "1. first\n12) second\n3.5 ms", "1\\. first\\\n12\\) second\\\n3\\.5 ms"},
		{"list markers", "+ a\n  * b\n-c", "\\+ a\\\n  \\* b\\\n\\-c"},
		{"thematic break", "x\n___\n- - -", "x\\\n\\_\\_\\_\\\n\\- - -"},
		{"table", "a | b\n--|--", "a \\| b\\\n\\--\\|--"},
		{"intraword underscore", "snake_case _lead trail_ a_", "snake_case \\_lead trail\\_ a\\_"},
		{"gitlab refs", "!12 $34 &56 %v1.0 ~bug ~\"needs review\" ^alert#7",
			"\\!\u200B12 \\$\u200B34 \\&\u200B56 \\%\u200Bv1.0 \\~\u200Bbug \\~\u200B\"needs review\" \\^\u200Balert\\#\u200B7"},
		{"code span", "run `rm -rf /` now", "run \\`rm -rf /\\` now"},
		{"fence", "```\ncode\n```", "\\`\\`\\`\\\ncode\\\n\\`\\`\\`"},
		{"emphasis", "*bold* _it_ ~~gone~~", "\\*bold\\* \\_it\\_ \\~\u200B\\~\u200Bgone\\~\u200B\\~"},
		{"backslash", `a\b\`, `a\\b\\`},
		{"lines", "tollgate: deny\n- NO_CHANGE\r\n# heading\r> quote", "tollgate: deny\\\n\\- NO_CHANGE\\\n\\# heading\\\n\\> quote"},
		{"blank line", "a\n\nb", "a\\\n\\\nb"},
		{"setext", "title\n===", "title\\\n\\==="},
		{"indented code", "    code\n", "code"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"NUL", "a\x00b", "a\uFFFDb"},
		{"controls", "a\tb\x1b[31m\u202Eevil", `a b \[31m evil`},
		{"unicode", "Zürich ü 日本", "Zürich ü 日本"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Markdown(tc.in)
			if got != tc.want {
				t.Errorf("Markdown(%q) =\n %q, want\n %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestMarkdownRendersItsText: whatever the text, the rendered comment shows
// its characters (as Line keeps them, line breaks kept) and no ASCII
// punctuation that could start something is left to the renderer.
func TestMarkdownRendersItsText(t *testing.T) {
	ins := []string{
		"tollgate: deny (decision 0190f3a4-7b1c-7d2e-9f00-123456789abc)\n- CHANGE_NOT_APPROVED CHG0097001: CHG0097001 is not approved (state requested)",
		"[![a](b)](c) <a href='x'>y</a> `z` **w** @x #1 !2 ~3 %4 $5 &6 ^7 GH-8 http://h www.w.x a@b.c",
		"\\\\\\\n\\\n\\", "  \n\n lead", "x\r\ny\rz\n", "\u00e9\u200b@\u200b",
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab19 \n\r\t\\@#!$&%~^:/.-_*`[]()<>|{}=+wWgGhH\x00\xffé日\u202E")
	for range 2000 {
		var b strings.Builder
		for range r.IntN(24) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		ins = append(ins, b.String())
	}
	for _, in := range ins {
		got := Markdown(in)
		if !utf8.ValidString(got) {
			t.Fatalf("Markdown(%q) = %q: not UTF-8", in, got)
		}
		if want := strings.ReplaceAll(textOf(in), zwsp, ""); plain(got) != want {
			t.Fatalf("Markdown(%q) = %q renders %q, want %q", in, got, plain(got), want)
		}
		// Left unescaped: only punctuation that starts nothing inside a
		// line ("_" within a word), never a line's first character.
		lineStart := true
		for i := 0; i < len(got); i++ {
			c := got[i]
			switch {
			case c == '\\':
				i++ // the character it escapes, or its line break
				lineStart = i < len(got) && got[i] == '\n'
				continue
			case c == ' ':
				continue
			case asciiPunct(c) && (lineStart || !strings.ContainsRune(quiet+"_", rune(c))):
				t.Fatalf("Markdown(%q) = %q leaves %q at %d unescaped", in, got, c, i)
			case c == '_' && (i == 0 || i+1 == len(got) || !alnum(got[i-1]) || !alnum(got[i+1])):
				t.Fatalf("Markdown(%q) = %q leaves a \"_\" outside a word at %d", in, got, i)
			}
			lineStart = false
		}
		if Markdown(strings.ToValidUTF8(in, "\uFFFD")) != got {
			t.Fatalf("Markdown(%q) differs once the text is stored", in)
		}
	}
}

// textOf is the text Markdown's output should render: Line's characters,
// line by line, without leading or trailing blank space.
func textOf(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"), "\n")
	for i, l := range lines {
		lines[i] = Line(l)
	}
	return strings.Trim(strings.Join(lines, "\n"), " \n")
}

func TestMarkdownClip(t *testing.T) {
	reason := "tollgate: deny (decision dec-42)\n- NO_CHANGE: " + strings.Repeat(`ü\@`, 200)
	for n := 0; n <= 300; n++ {
		got := MarkdownClip(reason, n)
		if len(got) > max(n, len("…")) || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Fatalf("MarkdownClip(%d) = %q: %d bytes", n, got, len(got))
		}
		body := strings.TrimSuffix(got, "…")
		if !strings.HasPrefix(Markdown(reason), body) {
			t.Fatalf("MarkdownClip(%d) = %q: not a prefix of Markdown", n, got)
		}
		run := len(body) - len(strings.TrimRight(body, `\`))
		if run%2 == 1 {
			t.Fatalf("MarkdownClip(%d) = %q ends in half an escape", n, got)
		}
		if n >= 40 && !strings.Contains(got, "(decision dec-42)") {
			t.Fatalf("MarkdownClip(%d) = %q lost the decision", n, got)
		}
	}
	if got := MarkdownClip("short @x", 250); got != "short \\@\u200Bx" {
		t.Errorf("MarkdownClip of a short text = %q, want it whole", got)
	}
}
