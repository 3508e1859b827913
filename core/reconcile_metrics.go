package core

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Release metrics group deployments by one dimension.
const (
	GroupByTeam        = "team"
	GroupByService     = "service"
	GroupByEnvironment = "environment"
)

// ValidGroupBy reports whether g is a metrics grouping.
func ValidGroupBy(g string) bool {
	return g == GroupByTeam || g == GroupByService || g == GroupByEnvironment
}

// DefaultFailureWindow is how long after a deployment an incident on its
// service counts as caused by it (change failure rate).
const DefaultFailureWindow = 24 * time.Hour

// Stat summarises a sample.
type Stat struct {
	Count  int      `json:"count"`
	Median *float64 `json:"median"`
	P90    *float64 `json:"p90,omitempty"`
	Mean   *float64 `json:"mean,omitempty"`
}

// GateOutcomes counts a group's gate decisions.
type GateOutcomes struct {
	Allow int `json:"allow"`
	Wait  int `json:"wait"`
	Deny  int `json:"deny"`
	// MedianWaitMinutes is the median time from a release's first wait to
	// its first allow after it, among releases that waited and then were
	// allowed in the period.
	MedianWaitMinutes *float64 `json:"median_wait_minutes"`
	WaitedReleases    int      `json:"waited_releases"`
}

// GroupMetrics are one group's release metrics.
type GroupMetrics struct {
	Key               string  `json:"key"`
	Deployments       int     `json:"deployments"`
	DeploymentsPerDay float64 `json:"deployments_per_day"`
	// LeadTimeHours: change approved → deployment started, over deployments
	// linking an approved change.
	LeadTimeHours Stat `json:"lead_time_hours"`
	// FailedDeployments failed, were rolled back, or were followed within
	// the failure window by a new incident on their service.
	FailedDeployments int      `json:"failed_deployments"`
	ChangeFailureRate *float64 `json:"change_failure_rate"`
	// EmergencyRatio is the share of deployments linking an emergency change.
	EmergencyDeployments int      `json:"emergency_deployments"`
	EmergencyRatio       *float64 `json:"emergency_ratio"`
	// MTTRHours: opened → resolved of the incidents the group's
	// deployments were linked to as fixes.
	MTTRHours Stat         `json:"mttr_hours"`
	Gate      GateOutcomes `json:"gate"`
}

// ReleaseMetrics is the answer of GET /api/v1/metrics/releases.
type ReleaseMetrics struct {
	From          time.Time      `json:"from"`
	To            time.Time      `json:"to"`
	GroupBy       string         `json:"group_by"`
	FailureWindow string         `json:"failure_window"`
	Groups        []GroupMetrics `json:"groups"`
}

// MetricsAccumulator computes ReleaseMetrics from a stream: incidents
// first (AddIncident), then deployments (AddDeployment), gate outcomes
// (AddGateCounts, AddWait) and fixed incidents (AddFixedIncident), then
// Result. It keeps counts per group and the lead-time and MTTR samples.
type MetricsAccumulator struct {
	from, to time.Time
	groupBy  string
	window   time.Duration
	groups   map[string]*groupAcc
	opened   map[string][]time.Time // incident open times by service (lower case); "" global
	sorted   bool
	fixedBy  map[string]string // incident key → group of the first deployment fixing it
}

type groupAcc struct {
	m     GroupMetrics
	lead  []float64
	mttr  []float64
	waits []float64
}

// NewMetricsAccumulator starts metrics for [from, to) grouped by groupBy,
// with the failure window (DefaultFailureWindow when <= 0).
func NewMetricsAccumulator(from, to time.Time, groupBy string, window time.Duration) *MetricsAccumulator {
	if window <= 0 {
		window = DefaultFailureWindow
	}
	return &MetricsAccumulator{from: from, to: to, groupBy: groupBy, window: window, groups: map[string]*groupAcc{},
		opened: map[string][]time.Time{}, fixedBy: map[string]string{}}
}

// Window is the failure window in use.
func (m *MetricsAccumulator) Window() time.Duration { return m.window }

func (m *MetricsAccumulator) group(key string) *groupAcc {
	g := m.groups[key]
	if g == nil {
		g = &groupAcc{m: GroupMetrics{Key: key}}
		m.groups[key] = g
	}
	return g
}

// GroupKey is the group of a deployment (or release) with these names.
func (m *MetricsAccumulator) GroupKey(service, environment, team string) string {
	switch m.groupBy {
	case GroupByService:
		return service
	case GroupByEnvironment:
		return environment
	}
	return team
}

// AddIncident records an incident's opening on its services (all, when it
// lists none), for the change failure rate.
func (m *MetricsAccumulator) AddIncident(i Incident) {
	if i.OpenedAt == nil {
		return
	}
	if len(i.Services) == 0 {
		m.opened[""] = append(m.opened[""], *i.OpenedAt)
	}
	for _, s := range i.Services {
		k := strings.ToLower(strings.TrimSpace(s))
		m.opened[k] = append(m.opened[k], *i.OpenedAt)
	}
	m.sorted = false
}

// incidentAfter reports whether an incident opened on service in
// (start, start+window].
func (m *MetricsAccumulator) incidentAfter(service string, start time.Time) bool {
	if !m.sorted {
		for _, ts := range m.opened {
			slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		}
		m.sorted = true
	}
	for _, k := range []string{strings.ToLower(strings.TrimSpace(service)), ""} {
		ts := m.opened[k]
		i := sort.Search(len(ts), func(i int) bool { return ts[i].After(start) })
		if i < len(ts) && !ts[i].After(start.Add(m.window)) {
			return true
		}
	}
	return false
}

// approvedAt is when a change got its approval: the latest approving
// approval's time, else when the version saying approved became true.
func approvedAt(v ChangeVersion) (time.Time, bool) {
	if v.Change.Approval != ApprovalApproved {
		return time.Time{}, false
	}
	var at time.Time
	for _, a := range v.Change.Approvals {
		if a.Decision == ApprovalApproved && a.At != nil && a.At.After(at) {
			at = *a.At
		}
	}
	if at.IsZero() {
		at = v.ValidFrom
	}
	return at, true
}

// AddDeployment counts one deployment with its changes as of its start.
func (m *MetricsAccumulator) AddDeployment(df DeploymentFacts) {
	d := &df.Deployment
	g := m.group(m.GroupKey(d.Service, d.Environment, d.Team))
	g.m.Deployments++
	if d.Status == DeployFailed || d.Status == DeployRolledBack || m.incidentAfter(d.Service, d.StartedAt) {
		g.m.FailedDeployments++
	}
	emergency := false
	var approved time.Time
	for _, v := range df.Changes {
		if v.Change.Type == ChangeEmergency {
			emergency = true
		}
		if at, ok := approvedAt(v); ok && at.After(approved) {
			approved = at
		}
	}
	if emergency {
		g.m.EmergencyDeployments++
	}
	if !approved.IsZero() && !approved.After(d.StartedAt) {
		g.lead = append(g.lead, d.StartedAt.Sub(approved).Hours())
	}
	for _, k := range d.Incidents {
		if _, ok := m.fixedBy[k]; !ok {
			m.fixedBy[k] = g.m.Key
		}
	}
}

// FixedIncidents are the incident keys deployments were linked to as
// fixes (AddFixedIncident takes their records).
func (m *MetricsAccumulator) FixedIncidents() []string {
	keys := make([]string, 0, len(m.fixedBy))
	for k := range m.fixedBy {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AddFixedIncident adds a fixed incident's time to resolve to the group
// whose deployment fixed it.
func (m *MetricsAccumulator) AddFixedIncident(i Incident) {
	key, ok := m.fixedBy[i.Key]
	if !ok || i.OpenedAt == nil || i.ResolvedAt == nil || i.ResolvedAt.Before(*i.OpenedAt) {
		return
	}
	g := m.group(key)
	g.mttr = append(g.mttr, i.ResolvedAt.Sub(*i.OpenedAt).Hours())
}

// AddGateCount counts n decisions of one kind for a group.
func (m *MetricsAccumulator) AddGateCount(group string, d Decision, n int) {
	g := m.group(group)
	switch d {
	case Allow:
		g.m.Gate.Allow += n
	case Wait:
		g.m.Gate.Wait += n
	case Deny:
		g.m.Gate.Deny += n
	}
}

// AddWait records that a release of group waited from firstWait until it
// was first allowed (ignored when it was not allowed after waiting).
func (m *MetricsAccumulator) AddWait(group string, firstWait, firstAllow time.Time) {
	if firstWait.IsZero() || firstAllow.IsZero() || firstAllow.Before(firstWait) {
		return
	}
	g := m.group(group)
	g.waits = append(g.waits, firstAllow.Sub(firstWait).Minutes())
}

// percentile is the nearest-rank percentile of sorted xs.
func percentile(xs []float64, p float64) float64 {
	rank := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(rank, 0)]
}

func round(x float64) *float64 {
	v := math.Round(x*1000) / 1000
	return &v
}

func stat(xs []float64, withP90, withMean bool) Stat {
	s := Stat{Count: len(xs)}
	if len(xs) == 0 {
		return s
	}
	slices.Sort(xs)
	s.Median = round(percentile(xs, 50))
	if withP90 {
		s.P90 = round(percentile(xs, 90))
	}
	if withMean {
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		s.Mean = round(sum / float64(len(xs)))
	}
	return s
}

// Result returns the metrics, groups sorted by key.
func (m *MetricsAccumulator) Result() ReleaseMetrics {
	days := m.to.Sub(m.from).Hours() / 24
	out := ReleaseMetrics{From: m.from, To: m.to, GroupBy: m.groupBy, FailureWindow: m.window.String(), Groups: []GroupMetrics{}}
	for _, g := range m.groups {
		gm := g.m
		if days > 0 {
			gm.DeploymentsPerDay = *round(float64(gm.Deployments) / days)
		}
		if gm.Deployments > 0 {
			gm.ChangeFailureRate = round(float64(gm.FailedDeployments) / float64(gm.Deployments))
			gm.EmergencyRatio = round(float64(gm.EmergencyDeployments) / float64(gm.Deployments))
		}
		gm.LeadTimeHours = stat(g.lead, true, false)
		gm.MTTRHours = stat(g.mttr, false, true)
		gm.Gate.WaitedReleases = len(g.waits)
		if len(g.waits) > 0 {
			slices.Sort(g.waits)
			gm.Gate.MedianWaitMinutes = round(percentile(g.waits, 50))
		}
		out.Groups = append(out.Groups, gm)
	}
	slices.SortFunc(out.Groups, func(a, b GroupMetrics) int { return strings.Compare(a.Key, b.Key) })
	return out
}
