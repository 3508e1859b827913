package jenkins

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// The Notification plugin sends each message once (its Retries setting
// tries again at once, with no pause to outlast a restart): a build that
// started or finished while tollgate was away is a deployment the
// reconciler never sees. With an api block and jobs, the poller reads the
// jobs' recent builds through Jenkins's JSON API and hands each to the
// inbox as the messages the plugin would have sent: STARTED at its start
// and, once it ended, COMPLETED at its end.

// jenkinsAPI is a connector's access to Jenkins's JSON API.
type jenkinsAPI struct {
	system         string // "Jenkins <connector>", in errors
	base           string
	user, password string // the API token
	http           *http.Client
	pages          int // pages of builds read per job and poll (0: pollPages)
}

// pollBuilds is how many of a job's builds one call reads; pollPages how
// many calls one poll makes per job at most (the newest 5,000 builds).
const (
	pollBuilds = 100
	pollPages  = 50
)

// buildsTree is the part of a job's builds the poller reads: from the
// from-th newest, pollBuilds of them.
func buildsTree(from int) string {
	return "builds[number,url,result,building,timestamp,duration,actions[parameters[name,value],lastBuiltRevision[SHA1]]]{" +
		strconv.Itoa(from) + "," + strconv.Itoa(from+pollBuilds) + "}"
}

// CloseIdleConnections closes the API client's idle connections.
func (w *Webhook) CloseIdleConnections() {
	if w.api != nil {
		w.api.http.CloseIdleConnections()
	}
}

// Polls reports whether the connector reads its jobs' builds (an api
// block and jobs).
func (w *Webhook) Polls() bool { return w.api != nil && len(w.jobs) > 0 }

// jobBuild is a build as the JSON API lists it.
type jobBuild struct {
	Number    json.Number `json:"number"`
	URL       string      `json:"url"`
	Result    string      `json:"result"`
	Building  bool        `json:"building"`
	Timestamp int64       `json:"timestamp"` // start, ms since the epoch
	Duration  int64       `json:"duration"`  // ms
	Actions   []struct {
		Parameters []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"parameters"`
		LastBuiltRevision *struct {
			SHA1 string `json:"SHA1"`
		} `json:"lastBuiltRevision"`
	} `json:"actions"`
}

// Poll implements service.PollSource: the configured jobs' builds that
// started or ended since since, as the Notification plugin's STARTED and
// COMPLETED messages, oldest first across the jobs (so the poller's
// watermark, the newest record stored, never passes one not yet stored).
// A build still running is sent as started whenever it began; the inbox
// stores each message once.
func (w *Webhook) Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error {
	if !w.Polls() {
		return core.Errorf(core.KindInvalid, "connector has no Jenkins API and jobs to poll")
	}
	var recs []connectors.Record
	var unread []string
	for _, job := range w.jobs {
		rs, all, err := w.builds(ctx, job, since)
		if err != nil {
			return err
		}
		if !all {
			unread = append(unread, job)
		}
		recs = append(recs, rs...)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].UpdatedAt.Before(recs[j].UpdatedAt) })
	for _, r := range recs {
		if err := emit(r); err != nil {
			return err
		}
	}
	if len(unread) > 0 {
		// Jenkins lists builds newest first only: the ones past the last
		// page are older than every message handed on, and the watermark
		// has passed them. Said loudly, since they are not recovered.
		return core.Errorf(core.KindUnavailable, "%s: job %s: more than %d builds since %s; the older ones were not read",
			w.api.system, strings.Join(unread, ", "), w.api.maxPages()*pollBuilds, since.UTC().Format(time.RFC3339))
	}
	return nil
}

// builds returns the messages of job's builds since since, reading back
// a page at a time until a page ends with a build that ended before
// since, and whether it read that far.
func (w *Webhook) builds(ctx context.Context, job string, since time.Time) ([]connectors.Record, bool, error) {
	var recs []connectors.Record
	for page := 0; page < w.api.maxPages(); page++ {
		var out struct {
			Builds []jobBuild `json:"builds"`
		}
		if err := w.api.get(ctx, jobPath(job)+"/api/json?tree="+url.QueryEscape(buildsTree(page*pollBuilds)), "job "+job+" builds", &out); err != nil {
			return nil, false, err
		}
		for _, b := range out.Builds {
			rs, err := messagesOf(job, b, since)
			if err != nil {
				return nil, false, err
			}
			recs = append(recs, rs...)
		}
		if len(out.Builds) < pollBuilds {
			return recs, true, nil // the job's whole history
		}
		if last := out.Builds[len(out.Builds)-1]; !last.Building && time.UnixMilli(last.Timestamp+last.Duration).Before(since) {
			return recs, true, nil // older builds ended before since too
		}
	}
	return recs, false, nil
}

// maxPages is how many pages of builds one poll reads per job.
func (a *jenkinsAPI) maxPages() int {
	if a.pages > 0 {
		return a.pages
	}
	return pollPages
}

// messagesOf returns the plugin's messages of build b of job that fall
// since since: STARTED at its start (or while it runs), COMPLETED at its
// end.
func messagesOf(job string, b jobBuild, since time.Time) ([]connectors.Record, error) {
	if b.Number == "" || b.Timestamp <= 0 {
		return nil, nil
	}
	start := time.UnixMilli(b.Timestamp).UTC()
	end := time.UnixMilli(b.Timestamp + b.Duration).UTC()
	var out []connectors.Record
	add := func(phase string, at time.Time) error {
		n := Notification{Name: jobName(job), URL: jobURL(job), Build: Build{
			FullURL: b.URL, Number: b.Number, Phase: phase, Timestamp: json.Number(strconv.FormatInt(at.UnixMilli(), 10)),
			URL: jobURL(job) + b.Number.String() + "/", Parameters: map[string]json.RawMessage{},
		}}
		if phase == PhaseCompleted {
			n.Build.Status, n.Build.Duration = b.Result, json.Number(strconv.FormatInt(b.Duration, 10))
		}
		for _, a := range b.Actions {
			for _, p := range a.Parameters {
				if p.Name != "" && len(p.Value) > 0 {
					n.Build.Parameters[p.Name] = p.Value
				}
			}
			if a.LastBuiltRevision != nil && a.LastBuiltRevision.SHA1 != "" {
				n.Build.SCM = &SCM{Commit: a.LastBuiltRevision.SHA1}
			}
		}
		body, err := json.Marshal(n)
		if err != nil {
			return err
		}
		out = append(out, connectors.Record{Type: phase, Key: "build:" + job + "#" + b.Number.String() + ":" + phase, UpdatedAt: at, Body: body})
		return nil
	}
	if b.Building || !start.Before(since) {
		if err := add(PhaseStarted, start); err != nil {
			return nil, err
		}
	}
	if !b.Building && b.Result != "" && !end.Before(since) {
		if err := add(PhaseCompleted, end); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// jobName is a job's own name, without its folders, as the plugin's
// message names it (Job.getName): the profile's service when no SERVICE
// parameter is set, so a build polled and the same build sent by the
// plugin name one service.
func jobName(job string) string { return job[strings.LastIndex(job, "/")+1:] }

// jobURL is a job's URL relative to Jenkins's root, as the plugin's
// message gives it (Job.getUrl): job/team/job/deploy/. A build's is the
// job's followed by its number and a slash, unique across the jobs, which
// is why the profile takes it as the run id.
func jobURL(job string) string { return strings.TrimPrefix(jobPath(job), "/") + "/" }

// jobPath is a job's path on Jenkins: a job in a folder ("team/deploy")
// is /job/team/job/deploy, each name escaped as Jenkins escapes it.
func jobPath(job string) string {
	var b strings.Builder
	for _, seg := range strings.Split(job, "/") {
		b.WriteString("/job/")
		b.WriteString(rawEncode(seg))
	}
	return b.String()
}

// rawEncode escapes a job's name as Jenkins's Util.rawEncode does in the
// URLs it gives (Job.getUrl, and so the plugin's url and build.url, the
// run id): control characters, space, "#%/:;<>?[\]^` and every byte
// past 'z' (so {|}~ and all of UTF-8 beyond ASCII); letters, digits and
// !$&'()*+,-.=@_ stay as they are. A polled build's run id is then the
// plugin's to the byte.
func rawEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 'z' || strings.IndexByte("\"#%/:;<>?[\\]^`", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// get reads one API answer into out.
func (a *jenkinsAPI) get(ctx context.Context, path, what string, out any) error {
	what = a.system + ": " + what
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return core.Wrap(core.KindInvalid, err, what+": bad request")
	}
	req.SetBasicAuth(a.user, a.password)
	resp, err := a.http.Do(req)
	if err != nil {
		err = apiclient.UnwrapURL(err) // the caller names what was asked
		return core.Wrap(core.KindUnavailable, err, what)
	}
	body, rerr := apiclient.ReadBody(resp, 8<<20)
	if resp.StatusCode >= 300 {
		kind := core.KindInvalid // a job that does not exist, a token refused for good
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusUnauthorized {
			kind = core.KindUnavailable
		}
		return core.Wrap(kind, &apiclient.StatusError{Status: resp.StatusCode}, what)
	}
	if rerr != nil {
		return core.Wrap(core.KindUnavailable, rerr, what)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return core.Wrap(core.KindUnavailable, err, what+": unreadable answer")
	}
	return nil
}
