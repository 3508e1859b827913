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
