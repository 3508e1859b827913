package ui

import (
	"fmt"
	"html/template"
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

// chart is a bar chart of deployments per day by outcome, rendered as
// inline SVG (no script, no external asset), with the same numbers as a
// table for screen readers and for reading exact values.
type chart struct {
	Days   []chartDay
	Max    int
	Width  int
	Height int
	Bars   []chartBar
	Labels []chartLabel
}

type chartDay struct {
	Day                               time.Time
	Succeeded, Failed, Started, Total int
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

func deploymentChart(ds []core.Deployment, today time.Time, days int) chart {
	ch := chart{Width: 640, Height: 200}
	first := today.AddDate(0, 0, -(days - 1))
	ch.Days = make([]chartDay, days)
	for i := range ch.Days {
		ch.Days[i].Day = first.AddDate(0, 0, i)
	}
	for _, d := range ds {
		i := int(d.StartedAt.UTC().Sub(first) / (24 * time.Hour))
		if d.StartedAt.Before(first) || i < 0 || i >= days {
			continue
		}
		switch d.Status {
		case core.DeploySucceeded:
			ch.Days[i].Succeeded++
		case core.DeployFailed, core.DeployRolledBack:
			ch.Days[i].Failed++
		default:
			ch.Days[i].Started++
		}
		ch.Days[i].Total++
	}
	for _, d := range ch.Days {
		ch.Max = max(ch.Max, d.Total)
	}
	scale := max(ch.Max, 1)
	const top, bottom, left = 10, 30, 30
	plot := ch.Height - top - bottom
	slot := (ch.Width - left) / days
	for i, d := range ch.Days {
		x := left + i*slot + slot/6
		w := slot * 2 / 3
		y := top + plot
		for _, part := range []struct {
			n     int
			class string
			what  string
		}{{d.Succeeded, "ok", "succeeded"}, {d.Failed, "bad", "failed or rolled back"}, {d.Started, "run", "started"}} {
			if part.n == 0 {
				continue
			}
			h := part.n * plot / scale
			y -= h
			ch.Bars = append(ch.Bars, chartBar{X: x, Y: y, W: w, H: h, Class: part.class,
				Title: fmt.Sprintf("%s: %d %s", d.Day.Format("Jan 2"), part.n, part.what)})
		}
		if i%2 == 0 || days <= 7 {
			ch.Labels = append(ch.Labels, chartLabel{X: x + w/2, Y: ch.Height - 10, Text: d.Day.Format("Jan 2")})
		}
	}
	return ch
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
}
