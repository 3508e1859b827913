package core

import (
	"slices"
	"time"
)

// IncidentTimeline holds the incident versions in force over a moving
// window of time, so a stream of deployments in start order can ask which
// incidents were active at each start without reading history once per
// deployment: the store adds the versions that begin inside the window as
// it advances and Prune forgets what can no longer be in force.
//
// The version in force at t is, as for GateFacts with AsOf, the one that
// became true last by t: the latest ValidFrom <= t, the highest version
// number among equal ValidFroms (a version recorded late, older than the
// newest, has a higher number than versions that became true after it).
//
// It holds only incidents that may block: a version that is not active, or
// not kept by the timeline's filter (the policy's IsMajor), is recorded
// only when it ends or changes an incident already held.
type IncidentTimeline struct {
	keep  func(Incident) bool
	byKey map[string][]IncidentVersion // each sorted by ValidFrom, then Version
	keys  []string                     // sorted
}

// NewIncidentTimeline returns an empty timeline keeping the incidents keep
// accepts (all when nil).
func NewIncidentTimeline(keep func(Incident) bool) *IncidentTimeline {
	return &IncidentTimeline{keep: keep, byKey: map[string][]IncidentVersion{}}
}

// blocking reports whether a version is active and kept.
func (t *IncidentTimeline) blocking(i Incident) bool {
	return i.Active() && (t.keep == nil || t.keep(i))
}

// Add records one version (a repeat of a known version is ignored).
func (t *IncidentTimeline) Add(v IncidentVersion) {
	key := v.Incident.Key
	vs, ok := t.byKey[key]
	if !ok && !t.blocking(v.Incident) {
		return
	}
	if !ok {
		i, _ := slices.BinarySearch(t.keys, key)
		t.keys = slices.Insert(t.keys, i, key)
	}
	i, found := slices.BinarySearchFunc(vs, v, compareIncidentVersions)
	if found {
		return
	}
	t.byKey[key] = slices.Insert(vs, i, v)
}

// compareIncidentVersions orders the versions of one incident as they
// became true.
func compareIncidentVersions(a, b IncidentVersion) int {
	if c := a.ValidFrom.Compare(b.ValidFrom); c != 0 {
		return c
	}
	return a.Version - b.Version
}

// Len is the number of incidents held.
func (t *IncidentTimeline) Len() int { return len(t.keys) }

// inForce returns the version of vs in force at at.
func inForce(vs []IncidentVersion, at time.Time) (IncidentVersion, bool) {
	for i := len(vs) - 1; i >= 0; i-- {
		if !vs[i].ValidFrom.After(at) {
			return vs[i], true
		}
	}
	return IncidentVersion{}, false
}

// ActiveAt returns the incidents whose version in force at at is active
// and kept (the policy's IsMajor), sorted by key.
func (t *IncidentTimeline) ActiveAt(at time.Time) []Incident {
	var out []Incident
	for _, k := range t.keys {
		v, ok := inForce(t.byKey[k], at)
		if !ok || !t.blocking(v.Incident) {
			continue
		}
		out = append(out, v.Incident)
	}
	return out
}

// Prune forgets what cannot be in force at or after before: versions
// superseded by one in force at before, and incidents whose version in
// force at before does not block (inactive, or not kept) with no later
// version held.
func (t *IncidentTimeline) Prune(before time.Time) {
	keys := t.keys[:0]
	for _, k := range t.keys {
		vs := t.byKey[k]
		cur := -1
		for i := len(vs) - 1; i >= 0; i-- {
			if !vs[i].ValidFrom.After(before) {
				cur = i
				break
			}
		}
		if cur > 0 {
			vs = slices.Delete(vs, 0, cur)
			cur = 0
		}
		if cur == 0 && len(vs) == 1 && !t.blocking(vs[0].Incident) {
			delete(t.byKey, k)
			continue
		}
		t.byKey[k] = vs
		keys = append(keys, k)
	}
	clear(t.keys[len(keys):])
	t.keys = keys
}

// ChangeAsOf returns the version of a change in force at at among its
// versions (any order): the one that became true last by at (see
// IncidentTimeline).
func ChangeAsOf(vs []ChangeVersion, at time.Time) (ChangeVersion, bool) {
	best, ok := ChangeVersion{}, false
	for _, v := range vs {
		if v.ValidFrom.After(at) {
			continue
		}
		if !ok || v.ValidFrom.After(best.ValidFrom) || (v.ValidFrom.Equal(best.ValidFrom) && v.Version > best.Version) {
			best, ok = v, true
		}
	}
	return best, ok
}

// PIRsPendingAt returns the PIRs holding back the release (PIR.HoldsBack:
// team's or the service's, not its own) required by at and not signed off
// then (as they stood: pending).
func PIRsPendingAt(pirs []PIR, team, releaseID, service, version, env, commit string, at time.Time) []PIR {
	var out []PIR
	for _, p := range pirs {
		if !p.HoldsBack(team, releaseID, service, version, env, commit) {
			continue
		}
		if p.RequiredAt.After(at) || (p.SignedOffAt != nil && !p.SignedOffAt.After(at)) {
			continue
		}
		p.Status, p.SignedOffBy, p.SignedOffAt, p.Summary = PIRPending, "", nil, ""
		out = append(out, p)
	}
	slices.SortFunc(out, ComparePIRs)
	return out
}
