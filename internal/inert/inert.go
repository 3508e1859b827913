// Package inert makes untrusted text safe to write where a person reads it
// through another system's renderer: one line where a note has lines of its
// own (a commit message or an actor name must not forge "Approved by …"
// under tollgate's name), and no markup the ITSM would act on — a
// ServiceNow journal renders [code]…[/code] as HTML, Jira's wiki markup
// turns [~user] into a mention, [text|url] into a link and !url! into an
// image fetched from the reader's browser.
package inert

import (
	"regexp"
	"strings"
	"unicode"
)

// Line is s on one line: every control character, line or paragraph
// separator and bidirectional override (which can make a line read in
// another order than it is stored) becomes a space.
func Line(s string) string {
	if strings.IndexFunc(s, breaks) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if breaks(r) {
			return ' '
		}
		return r
	}, s)
}

func breaks(r rune) bool {
	switch {
	case unicode.IsControl(r), r == '\u2028', r == '\u2029':
		return true
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

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
var jiraMarkup = strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`, `!`, `\!`, `{`, `\{`, `}`, `\}`, `|`, `\|`)

// JiraWiki is s with Jira's wiki markup escaped (see jiraMarkup): what Jira
// shows is the text as written.
func JiraWiki(s string) string {
	if !strings.ContainsAny(s, `\[]!{}|`) {
		return s
	}
	return jiraMarkup.Replace(s)
}
