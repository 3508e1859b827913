package service

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/evidence"
)

// EvidenceStore is what Evidence needs from storage.
type EvidenceStore interface {
	GetRelease(ctx context.Context, id string) (core.Release, error)
	UpsertRelease(ctx context.Context, r core.Release) (core.Release, error)
	AddEvidence(ctx context.Context, e core.Evidence) (core.Evidence, error)
	ListEvidence(ctx context.Context, releaseID string, asOf time.Time) ([]core.Evidence, error)
}

// Evidence attaches proof to releases. It fails closed: whatever cannot be
// read, proves nothing (zero tests, no scanner run) or is not bound to the
// release's artifact is refused with the reason, and nothing is recorded.
type Evidence struct {
	store    EvidenceStore
	policies *Policies
	clock    core.Clock
}

// NewEvidence wires the evidence service.
func NewEvidence(store EvidenceStore, policies *Policies, clock core.Clock) *Evidence {
	return &Evidence{store: store, policies: policies, clock: clock}
}

// ReleaseRef names a release by service, environment and version (and
// commit), so evidence can be attached before the first gate check.
type ReleaseRef struct {
	Service     string `json:"service"`
	Environment string `json:"environment"`
	Version     string `json:"version"`
	Commit      string `json:"commit,omitempty"`
}

// EvidenceInput is one piece of evidence as a pipeline sends it: exactly
// one of Status, JUnit (the XML), SARIF or DSSE (the JSON documents).
type EvidenceInput struct {
	Kind    string             `json:"kind"`
	Name    string             `json:"name"`
	Status  *string            `json:"status,omitempty"`
	JUnit   *string            `json:"junit,omitempty"`
	SARIF   json.RawMessage    `json:"sarif,omitempty"`
	DSSE    json.RawMessage    `json:"dsse,omitempty"`
	Digest  string             `json:"digest,omitempty"`
	URL     string             `json:"url,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Release *ReleaseRef        `json:"release,omitempty"`
}

// ReleaseWithEvidence is a release and everything attached to it.
type ReleaseWithEvidence struct {
	core.Release
	Evidence []core.Evidence `json:"evidence"`
}

// Get returns a release with its evidence.
func (s *Evidence) Get(ctx context.Context, id string) (ReleaseWithEvidence, error) {
	r, err := s.store.GetRelease(ctx, id)
	if err != nil {
		return ReleaseWithEvidence{}, err
	}
	ev, err := s.store.ListEvidence(ctx, id, time.Time{})
	if err != nil {
		return ReleaseWithEvidence{}, err
	}
	return ReleaseWithEvidence{Release: r, Evidence: ev}, nil
}

// MaxEvidencePerRelease, MaxEvidenceHistory and MaxEvidenceMetrics bound
// what one release carries. Each gate check of it reads its evidence and
// records the current records (core.CurrentEvidence: the newest per kind,
// name and commit) in the decision, so a token attaching without end would
// make every check slower and every decision larger. A re-run's record
// supersedes the one of the same name and is always taken until the
// release's history is full; a release is one version: hundreds of names
// are plenty.
const (
	MaxEvidencePerRelease = 200
	MaxEvidenceHistory    = 2000
	MaxEvidenceMetrics    = 64
)

// roomFor refuses e when release id holds MaxEvidencePerRelease current
// records and e is not one of them again, or its history is full.
func roomFor(id string, e core.Evidence, prior []core.Evidence) error {
	if len(prior) >= MaxEvidenceHistory {
		return core.Errorf(core.KindConflict, "release %s holds %d evidence records, the most one release keeps; ship the new build under a new version", id, len(prior))
	}
	current := core.CurrentEvidence(prior)
	if len(current) < MaxEvidencePerRelease {
		return nil
	}
	for _, p := range current {
		if p.Kind == e.Kind && p.Name == e.Name && strings.EqualFold(p.Commit, e.Commit) {
			return nil // supersedes a record it holds
		}
	}
	return core.Errorf(core.KindConflict, "release %s holds %d current evidence records (kind, name and commit), the most one release takes: every gate check of it reads and records them; attach again under a name it holds, or ship the new build under a new version",
		id, len(current))
}

// Attach validates in, reads its document and records it on release id
// (audited, with who and when). The release is created when in.Release
// names it and it is new (id must then be its release id).
func (s *Evidence) Attach(ctx context.Context, id string, in EvidenceInput, actor string) (core.Evidence, error) {
	cp := s.policies.Current()
	e := core.Evidence{ID: newID(), Kind: strings.TrimSpace(in.Kind), Name: strings.TrimSpace(in.Name),
		Digest: strings.TrimSpace(in.Digest), URL: strings.TrimSpace(in.URL), RecordedBy: actor, RecordedAt: s.clock.Now()}
	if err := s.validate(cp, &e, in); err != nil {
		return core.Evidence{}, err
	}
	rel, err := s.release(ctx, cp, id, in.Release)
	if err != nil {
		return core.Evidence{}, err
	}
	e.ReleaseID = rel.ID
	// Bound to its commit: a version label reused for other code does not
	// inherit this evidence (core.SameCommit). Attached by release id, or
	// with a reference naming no commit, it is the release's commit's —
	// evidence naming no commit would count for every commit.
	if in.Release != nil {
		e.Commit = strings.ToLower(strings.TrimSpace(in.Release.Commit))
		if len(e.Commit) > 128 {
			return core.Evidence{}, core.Invalid("release.commit", "is longer than 128 characters")
		}
	}
	if e.Commit == "" {
		e.Commit = strings.ToLower(strings.TrimSpace(rel.Commit))
	}
	if err := s.read(ctx, cp, &e, in, rel.Environment); err != nil {
		return core.Evidence{}, err
	}
	prior, err := s.store.ListEvidence(ctx, rel.ID, time.Time{})
	if err != nil {
		return core.Evidence{}, err
	}
	if err := roomFor(rel.ID, e, prior); err != nil {
		return core.Evidence{}, err
	}
	if e.Digest != "" {
		for _, p := range prior {
			if p.Digest != "" && p.Digest != e.Digest {
				return core.Evidence{}, core.Invalid("digest", "%s does not match the release's artifact %s (named by %s %s); evidence is bound to one artifact",
					e.Digest, p.Digest, p.Kind, p.Name)
			}
		}
	}
	return s.store.AddEvidence(ctx, e)
}

// evidenceDocument is the document field that alone proves each built-in
// kind that has one; the other kinds (checklists, performance, the
// policy's own) take a status or any document.
var evidenceDocument = map[string]string{
	core.EvidenceTests:             "junit",
	core.EvidenceSecurityScan:      "sarif",
	core.EvidenceArtifactSignature: "dsse",
}

var documentName = map[string]string{"junit": "JUnit report", "sarif": "SARIF scan", "dsse": "signed DSSE envelope"}

// validate checks the fields common to every kind of evidence.
func (s *Evidence) validate(cp *core.CompiledPolicy, e *core.Evidence, in EvidenceInput) error {
	if e.Kind == "" {
		return core.Invalid("kind", "is required; kinds are %s", strings.Join(cp.EvidenceKinds(), ", "))
	}
	if !cp.EvidenceKnown(e.Kind) {
		return core.Invalid("kind", "unknown evidence kind %q; kinds are %s (declare others in the policy's evidence_kinds)", e.Kind, strings.Join(cp.EvidenceKinds(), ", "))
	}
	if err := validateName("name", e.Name, true); err != nil {
		return err
	}
	if e.Digest != "" && !evidence.ValidDigest(e.Digest) {
		return core.Invalid("digest", "%q is not an artifact digest sha256:<64 hex digits>", e.Digest)
	}
	if len(e.URL) > 2048 {
		return core.Invalid("url", "is longer than 2048 characters")
	}
	n := 0
	for _, given := range []bool{in.Status != nil, in.JUnit != nil, len(in.SARIF) > 0, len(in.DSSE) > 0} {
		if given {
			n++
		}
	}
	if n != 1 {
		return core.Invalid("status", "give exactly one of status (passed or failed), junit, sarif or dsse; got %d", n)
	}
	// A kind a document proves is proved by that document only: a bare
	// "passed" would satisfy a signature, scan or test requirement that
	// nothing verified.
	if field, ok := evidenceDocument[e.Kind]; ok {
		given := map[string]bool{"junit": in.JUnit != nil, "sarif": len(in.SARIF) > 0, "dsse": len(in.DSSE) > 0}
		if !given[field] {
			return core.Invalid(field, "evidence of kind %s is proved by its %s document (%s); a status or another document proves nothing about it", e.Kind, documentName[field], field)
		}
	}
	if len(in.Metrics) > MaxEvidenceMetrics {
		return core.Invalid("metrics", "holds %d measurements; at most %d are taken per record", len(in.Metrics), MaxEvidenceMetrics)
	}
	for _, k := range slices.Sorted(maps.Keys(in.Metrics)) {
		if err := validateName("metrics", k, true); err != nil {
			return err
		}
	}
	e.Metrics = in.Metrics
	return nil
}

// read reads the document (or the plain status) into e.
func (s *Evidence) read(ctx context.Context, cp *core.CompiledPolicy, e *core.Evidence, in EvidenceInput, env string) error {
	switch {
	case in.Status != nil:
		st := strings.TrimSpace(*in.Status)
		if st != core.EvidencePassed && st != core.EvidenceFailed {
			return core.Invalid("status", "%q is not a status; use passed or failed (an empty value proves nothing)", st)
		}
		e.Status, e.Format = st, "status"
	case in.JUnit != nil:
		sum, err := evidence.JUnit([]byte(*in.JUnit))
		if err != nil {
			return core.Invalid("junit", "%v", err)
		}
		e.Tests, e.Status, e.Format = &sum, evidence.TestStatus(sum), "junit"
	case len(in.SARIF) > 0:
		sum, err := evidence.SARIF(in.SARIF)
		if err != nil {
			return core.Invalid("sarif", "%v", err)
		}
		// The scan ran; whether its findings are acceptable is the
		// policy's max_severity.
		e.Findings, e.Status, e.Format = &sum, core.EvidencePassed, "sarif"
	default:
		keys := cp.SigningKeys(env)
		ek := make([]evidence.Key, len(keys))
		for i, k := range keys {
			ek[i] = evidence.Key{ID: k.ID, PEM: k.PublicKey}
		}
		sig, err := evidence.DSSE(ctx, in.DSSE, ek)
		if err != nil {
			return core.Invalid("dsse", "%v", err)
		}
		switch {
		case e.Digest == "" && len(sig.Digests) == 1:
			e.Digest = sig.Digests[0]
		case e.Digest == "":
			return core.Invalid("digest", "the statement names %d artifacts (%s); name the one this release deploys", len(sig.Digests), strings.Join(sig.Digests, ", "))
		case !slices.Contains(sig.Digests, e.Digest):
			return core.Invalid("digest", "the signed statement is for %s, not %s", strings.Join(sig.Digests, ", "), e.Digest)
		}
		e.Signer, e.SignerKey, e.Status, e.Format = sig.KeyID, sig.KeyFingerprint, core.EvidencePassed, core.EvidenceFormatDSSE
	}
	return nil
}

// release finds release id, or creates it from ref when it is new.
func (s *Evidence) release(ctx context.Context, cp *core.CompiledPolicy, id string, ref *ReleaseRef) (core.Release, error) {
	id = strings.TrimSpace(id)
	if ref == nil {
		return s.store.GetRelease(ctx, id)
	}
	req, known := cp.CanonicalRequest(core.GateRequest{Service: strings.TrimSpace(ref.Service), Environment: strings.TrimSpace(ref.Environment), Version: strings.TrimSpace(ref.Version)})
	for _, f := range []struct{ name, v string }{{"release.service", req.Service}, {"release.environment", req.Environment}, {"release.version", req.Version}} {
		if err := validateName(f.name, f.v, true); err != nil {
			return core.Release{}, err
		}
	}
	if !known {
		return core.Release{}, core.Invalid("release.environment", "unknown environment %q; the policy knows %s", ref.Environment, strings.Join(cp.Environments(), ", "))
	}
	canonical := core.ReleaseID(req.Service, req.Version, req.Environment)
	if id != canonical && id != core.ReleaseID(strings.TrimSpace(ref.Service), strings.TrimSpace(ref.Version), strings.TrimSpace(ref.Environment)) {
		return core.Release{}, core.Invalid("release", "names release %s, not %s", canonical, id)
	}
	r, err := s.store.GetRelease(ctx, canonical)
	if err == nil || !core.IsKind(err, core.KindNotFound) {
		return r, err
	}
	r, err = s.store.UpsertRelease(ctx, core.Release{Service: req.Service, Version: req.Version, Environment: req.Environment, Team: req.Team, Commit: strings.TrimSpace(ref.Commit)})
	if err != nil {
		return core.Release{}, fmt.Errorf("create release: %w", err)
	}
	return r, nil
}
