// Package inert makes untrusted text safe to write where a person reads it
// through another system's renderer: one line where a note has lines of its
// own (a commit message or an actor name must not forge "Approved by …"
// under tollgate's name), and no markup the ITSM would act on — a
// ServiceNow journal renders [code]…[/code] as HTML, Jira's wiki markup
// turns [~user] into a mention, [text|url] into a link and !url! into an
// image fetched from the reader's browser; GitHub's and GitLab's Markdown
// turn @team into a notification, #12 into a cross-reference and
// ![x](url) into an image.
package inert

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/core"
)

// Line is s on one line (core.OneLine): every control character, line or
// paragraph separator and bidirectional override (which can make a line
// read in another order than it is stored) becomes a space.
func Line(s string) string { return core.OneLine(s) }

// codeTag is ServiceNow's journal markup for raw HTML, in any case and
// spacing the instance may accept.
var codeTag = regexp.MustCompile(`(?i)\[\s*/?\s*code\s*\]`)

// ServiceNow is s with ServiceNow's [code] tags made plain text: "[code]"
// becomes "(code)", so a journal entry never renders HTML tollgate did not
// write (tollgate's own notes use none).
func ServiceNow(s string) string {
	if !strings.Contains(s, "[") {
		return s
	}
	return codeTag.ReplaceAllStringFunc(s, func(t string) string {
		return "(" + t[1:len(t)-1] + ")"
	})
}

// jiraMarkup escapes the wiki-markup characters that make links and
// mentions ([…]), images (!…!), macros ({…}) and tables (|); the
// formatting ones (*bold*, _italic_) change how text looks, not what it
// does, and escaping them would break the links Jira makes of bare URLs.
//
// A backslash of the text becomes U+29F5 (⧵, which reads the same): an
// escaped one ("\\") is Jira's forced line break, and one left alone would
// escape tollgate's own escape.
var jiraMarkup = strings.NewReplacer(`\`, "\u29F5", `[`, `\[`, `]`, `\]`, `!`, `\!`, `{`, `\{`, `}`, `\}`, `|`, `\|`)

// JiraWiki is s with Jira's wiki markup escaped (see jiraMarkup): what Jira
// shows is the text as written.
func JiraWiki(s string) string {
	if !strings.ContainsAny(s, `\[]!{}|`) {
		return s
	}
	return jiraMarkup.Replace(s)
}

// zwsp (U+200B ZERO WIDTH SPACE) splits a reference where a backslash does
// not: GitHub finds @mentions and #12 in the rendered text, after the
// escapes are gone (github/markup#1168, github/cmark-gfm#181), and a
// renderer may autolink a bare URL from the text the escapes leave. It
// shows as nothing, so the text reads the same.
const zwsp = "\u200B"

// refSigils start a reference when a name or number follows: @user and
// @org/team and #12 on both CIs, and GitLab's !merge request, $snippet,
// &epic, %milestone, ~label and ^alert (GitLab also honours their escapes,
// older instances not).
const refSigils = "@#!$&%~^"

// Markdown is s written in GitHub's and GitLab's Markdown so that it renders
// as its own characters and does nothing else: no @mention or team
// notification, no issue, merge request or other cross-reference, no link,
// autolink or image, no raw HTML, code span, heading or list. Every ASCII
// punctuation character that could start one is backslash-escaped
// (CommonMark lets any be; active says which), a
// zero width space follows a reference sigil with anything but a space
// after it, the colon of "://", the "www" of "www." and the dash of
// "GH-12", and each line break is a hard one (a backslash before it), so
// lines stay lines and none begins a block.
//
// The characters are Line's (control characters and bidirectional
// overrides become spaces) once invalid UTF-8 and NUL are U+FFFD, as a
// database keeps them: Markdown of the stored text is Markdown of the text.
// Leading and trailing blank space goes: the renderer drops it, or would
// make indented code of it.
func Markdown(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"), "\n")
	for i, l := range lines {
		lines[i] = Line(l)
	}
	s = strings.Trim(strings.Join(lines, "\n"), " \n")
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	start := firstNonSpace(s, 0) // of the line i is in
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' {
			start = firstNonSpace(s, i+1)
		}
		switch {
		case c == '\n':
			b.WriteString("\\\n")
		case !asciiPunct(c):
			b.WriteByte(c) // a multi-byte character goes through byte by byte
		default:
			next := byte(' ')
			if i+1 < len(s) {
				next = s[i+1]
			}
			www := c == '.' && i >= 3 && strings.EqualFold(s[i-3:i], "www")
			if www {
				b.WriteString(zwsp)
			}
			if www || active(s, i, start) {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
			switch {
			case strings.IndexByte(refSigils, c) >= 0 && next != ' ' && next != '\n',
				c == ':' && next == '/',
				c == '-' && i >= 2 && strings.EqualFold(s[i-2:i], "gh") && next >= '0' && next <= '9':
				b.WriteString(zwsp)
			}
		}
	}
	return b.String()
}

// quiet is the punctuation that starts nothing inside a line: the
// backslash it would take is left out so that reason codes, keys, dates
// and decision ids read (and copy) as they are. "_" joins this set within
// a word, where it cannot open emphasis.
const quiet = `-.:()/,;'"?+=`

// active reports whether the punctuation at s[i] may start something a
// renderer acts on, and so is escaped: anything at a line's start (a list,
// heading, quote, fence, table, setext underline or thematic break); the
// "." or ")" of an ordered list's "1." there; the ":" of a scheme's "://";
// "_" outside a word; and every character outside quiet.
// start is the index of the first character of i's line that is not a
// space.
func active(s string, i, start int) bool {
	c := s[i]
	digits := start
	for digits < i && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	switch {
	case i == start, digits == i && digits > start && (c == '.' || c == ')'):
		return true
	case c == ':':
		return i+1 < len(s) && s[i+1] == '/'
	case c == '_':
		return i == 0 || i+1 == len(s) || !alnum(s[i-1]) || !alnum(s[i+1])
	}
	return strings.IndexByte(quiet, c) < 0
}

// firstNonSpace is the index of the first character from i on that is
// not a space.
func firstNonSpace(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// asciiPunct reports whether c is one of CommonMark's ASCII punctuation
// characters, the ones a backslash escapes.
func asciiPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

// MarkdownClip is Markdown(s) in at most n bytes (n of 3 or more): a
// longer one is cut on a character boundary and marked "…". The cut never splits an escape: a
// backslash left last would escape nothing and show.
func MarkdownClip(s string, n int) string {
	m := Markdown(s)
	if len(m) <= n {
		return m
	}
	cut := max(n-len("…"), 0)
	for cut > 0 && !utf8.RuneStart(m[cut]) {
		cut--
	}
	// Markdown writes backslashes in pairs (an escaped one) or before the
	// character they escape: an odd run at the end lost its character.
	run := 0
	for run < cut && m[cut-1-run] == '\\' {
		run++
	}
	if run%2 == 1 {
		cut--
	}
	return m[:cut] + "…"
}
