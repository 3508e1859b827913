package ui

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// freezeSpan is one freeze window of an environment.
type freezeSpan struct {
	Environment string
	Name        string
	From, To    time.Time
}

// freezeStep is how finely freezeSpans looks for a freeze's start; the
// start is then found to the minute by bisection (the end comes exact
// from the policy).
const freezeStep = 15 * time.Minute

// freezeSpans lists the freeze windows of env overlapping [from, to).
func freezeSpans(cp *core.CompiledPolicy, env string, from, to time.Time) []freezeSpan {
	var out []freezeSpan
	prev := from
	for t := from; t.Before(to); {
		name, until, ok := cp.ActiveFreeze(env, t)
		if !ok {
			prev, t = t, t.Add(freezeStep)
			continue
		}
		start := t
		if t.After(from) { // bisect the start between prev (free) and t (frozen)
			lo, hi := prev, t
			for hi.Sub(lo) > time.Minute {
				mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Minute)
				if mid.Equal(lo) {
					break
				}
				if _, _, on := cp.ActiveFreeze(env, mid); on {
					hi = mid
				} else {
					lo = mid
				}
			}
			start = hi
		}
		out = append(out, freezeSpan{Environment: env, Name: name, From: start, To: until})
		if !until.After(t) {
			until = t.Add(time.Minute)
		}
		prev, t = until, until
	}
	return out
}

// chart is a stacked bar chart rendered as inline SVG (no script, no
// external asset); pages show the same numbers as a table, for screen
// readers and for reading exact values.
type chart struct {
	Max    int
	Width  int
	Height int
	Bars   []chartBar
	Labels []chartLabel
}

type chartBar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

type chartLabel struct {
	X, Y int
	Text string
}

// chartPart is one series of a stacked chart: its CSS class and name.
type chartPart struct{ Class, Name string }

// stackedChart draws one bar per label, stacked from values[i] (one value
// per part).
func stackedChart(labels []string, parts []chartPart, values [][]int) chart {
	ch := chart{Width: 640, Height: 200}
	for _, vs := range values {
		sum := 0
		for _, v := range vs {
			sum += v
		}
		ch.Max = max(ch.Max, sum)
	}
	scale := max(ch.Max, 1)
	const top, bottom, left = 10, 30, 30
	plot := ch.Height - top - bottom
	n := max(len(labels), 1)
	slot := (ch.Width - left) / n
	for i, label := range labels {
		x := left + i*slot + slot/6
		w := slot * 2 / 3
		y := top + plot
		for k, p := range parts {
			v := values[i][k]
			if v == 0 {
				continue
			}
			h := max(v*plot/scale, 1)
			y -= h
			ch.Bars = append(ch.Bars, chartBar{X: x, Y: y, W: w, H: h, Class: p.Class, Title: fmt.Sprintf("%s: %d %s", label, v, p.Name)})
		}
		if n <= 8 || i%2 == (n-1)%2 { // every label that fits, always the last
			ch.Labels = append(ch.Labels, chartLabel{X: x + w/2, Y: ch.Height - 10, Text: label})
		}
	}
	return ch
}

// dayCount is one day of the deployments chart.
type dayCount struct {
	Day                               time.Time
	Succeeded, Failed, Started, Total int
}

// deploymentDays counts deployments per day by outcome, over the days
// days ending today.
func deploymentDays(ds []core.Deployment, today time.Time, days int) []dayCount {
	first := today.AddDate(0, 0, -(days - 1))
	out := make([]dayCount, days)
	for i := range out {
		out[i].Day = first.AddDate(0, 0, i)
	}
	for _, d := range ds {
		if d.StartedAt.Before(first) || d.Status == core.DeployQueued {
			continue // a queued run has deployed nothing yet
		}
		i := int(d.StartedAt.UTC().Sub(first) / (24 * time.Hour))
		if i >= days {
			continue
		}
		switch d.Status {
		case core.DeploySucceeded:
			out[i].Succeeded++
		case core.DeployFailed, core.DeployRolledBack:
			out[i].Failed++
		default:
			out[i].Started++
		}
		out[i].Total++
	}
	return out
}

var deployParts = []chartPart{{"ok", "succeeded"}, {"bad", "failed or rolled back"}, {"run", "started"}}

func deploymentChart(days []dayCount) chart {
	labels := make([]string, len(days))
	values := make([][]int, len(days))
	for i, d := range days {
		labels[i] = d.Day.Format("Jan 2")
		values[i] = []int{d.Succeeded, d.Failed, d.Started}
	}
	return stackedChart(labels, deployParts, values)
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"whenp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"join": func(xs []string) string {
		if len(xs) == 0 {
			return "—"
		}
		return strings.Join(xs, ", ")
	},
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"add": func(a, b int) int { return a + b },
	// pathseg escapes a record key or id for a link's path: a key may
	// hold "/" or "#" (CHG1/../../tokens must not link elsewhere).
	"pathseg":        url.PathEscape,
	"deployStatuses": core.DeployStatuses,
	"list":           func(xs ...string) []string { return xs },
	// pageq makes a link of a page's query string (url.Values.Encode's):
	// written after a "?" in the template, html/template would escape its
	// "=" and "&" as data, and the link would lose its parameters.
	"pageq": func(q string) template.URL { return template.URL("?" + q) }, //nolint:gosec // built by url.Values.Encode
}
