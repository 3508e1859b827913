package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AuditEntry is one row of the hash-chained audit log. Each row carries the
// hash of the previous row and its own hash over (previous hash, canonical
// content), so editing, deleting or reordering any row breaks the chain.
type AuditEntry struct {
	Seq      int64           `json:"seq"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Subject  string          `json:"subject"`
	Data     json.RawMessage `json:"data,omitempty"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// GenesisHash is the PrevHash of the first row.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditTimeFormat is how At enters the canonical content: UTC, microseconds,
// fixed width (both databases keep microseconds).
const AuditTimeFormat = "2006-01-02T15:04:05.000000Z"

// CanonicalAuditContent is the byte string an entry's hash covers besides
// the previous hash: seq, time, actor, action, subject and data, each
// length-prefixed so no two different entries share an encoding. Data is
// compacted JSON, so insignificant whitespace does not matter.
func CanonicalAuditContent(e AuditEntry) []byte {
	seq := strconv.FormatInt(e.Seq, 10)
	tail := AuditContentTail(e)
	b := make([]byte, 0, len(seq)+24+len(tail))
	b = appendAuditField(b, seq)
	return append(b, tail...)
}

// AuditContentTail is CanonicalAuditContent without its first field, the
// sequence number: everything an entry's hash covers that is known before
// the entry is linked to the chain. PostgreSQL's group commit links
// entries inside the database (migration 00006) from this tail.
func AuditContentTail(e AuditEntry) string {
	data := compactData(e.Data)
	at := e.At.UTC().Truncate(time.Microsecond).Format(AuditTimeFormat)
	b := make([]byte, 0, len(at)+len(e.Actor)+len(e.Action)+len(e.Subject)+len(data)+5*8)
	for _, f := range []string{at, e.Actor, e.Action, e.Subject, data} {
		b = appendAuditField(b, f)
	}
	return string(b)
}

// compactData is data as the hash covers it: compacted JSON, or data as
// it is when it is not valid JSON. Data without a whitespace byte is its
// own compaction either way (valid, nothing to remove; invalid, kept as
// is), so it is returned without a pass of json.Compact: the store's own
// entries are written compact.
func compactData(data json.RawMessage) string {
	if len(data) == 0 || !bytes.ContainsAny(data, " \t\n\r") {
		return string(data)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return string(data)
	}
	return b.String()
}

// appendAuditField appends f length-prefixed: "len:f;".
func appendAuditField(b []byte, f string) []byte {
	b = strconv.AppendInt(b, int64(len(f)), 10)
	b = append(b, ':')
	b = append(b, f...)
	return append(b, ';')
}

// HashAuditEntry returns the hex SHA-256 of prev and e's canonical content.
func HashAuditEntry(prev string, e AuditEntry) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(CanonicalAuditContent(e))
	return hex.EncodeToString(h.Sum(nil))
}

// AuditBreak describes the first place at which the audit trail fails
// verification: a chain row (Seq), or a gate decision that disagrees with
// its chain entry or has none (DecisionID; Seq is its entry's row, 0 when
// it has none).
type AuditBreak struct {
	Seq        int64  `json:"seq"`
	DecisionID string `json:"decision_id,omitempty"`
	Reason     string `json:"reason"`
}

// AuditHead is the chain's newest row: its sequence number and hash (0
// and GenesisHash while the chain is empty). Kept outside the database, it
// is the anchor that shows rows deleted from the chain's end, which no
// chain can show by itself: verification fails when the chain no longer
// reaches it.
type AuditHead struct {
	Seq  int64     `json:"seq"`
	Hash string    `json:"hash"`
	At   time.Time `json:"at,omitzero"`
}

// VerifyAuditChain checks rows (ordered by Seq ascending, starting at the
// chain's first row) and returns the first break, or nil when the chain is
// intact. prev is the hash the first row must link to (GenesisHash for a
// whole chain); expectSeq the first row's sequence number (1 for a whole
// chain). It is incremental: feed it pages, passing on the returned state.
func VerifyAuditChain(rows []AuditEntry, prev string, expectSeq int64) (brk *AuditBreak, lastHash string, nextSeq int64) {
	for _, r := range rows {
		switch {
		case r.Seq != expectSeq:
			return &AuditBreak{Seq: r.Seq, Reason: fmt.Sprintf("sequence gap: expected row %d, found row %d (a row was deleted or renumbered)", expectSeq, r.Seq)}, prev, expectSeq
		case r.PrevHash != prev:
			return &AuditBreak{Seq: r.Seq, Reason: "prev_hash does not match the previous row's hash (a row was deleted, inserted or reordered)"}, prev, expectSeq
		case HashAuditEntry(prev, r) != r.Hash:
			return &AuditBreak{Seq: r.Seq, Reason: "hash does not match the row's content (the row was edited)"}, prev, expectSeq
		}
		prev = r.Hash
		expectSeq++
	}
	return nil, prev, expectSeq
}

// ActionGateDecision is the audit action of a recorded gate decision.
const ActionGateDecision = "gate.decision"

// ActionDeploymentLinks is the audit action of a report that changed the
// links of a deployment already recorded (subject deployment:<id>).
const ActionDeploymentLinks = "deployment.links"

// ActionFindingAck is the audit action of a reconciliation finding's
// acknowledgement (subject report:<id>, data {"finding", "comment"}); it
// commits with the acknowledgement.
const ActionFindingAck = "report.finding.ack"

// DecisionAuditData is the data of a gate decision's audit entry.
// DocSHA256 ties the stored decision document to the chain
// (DecisionDocSHA256 of the document as stored), so a decision edited in
// the database, in its columns or its document, no longer matches its
// entry. Entries written before the hash was recorded have none; their
// decisions are held to the decision and release alone.
type DecisionAuditData struct {
	DecisionID    string   `json:"decision_id"`
	Decision      Decision `json:"decision"`
	Reasons       []string `json:"reasons"`
	PolicyVersion int      `json:"policy_version"`
	DocSHA256     string   `json:"doc_sha256,omitempty"`
}

// DecisionDocSHA256 is the hex SHA-256 of a stored decision document.
func DecisionDocSHA256(doc []byte) string {
	h := sha256.Sum256(doc)
	return hex.EncodeToString(h[:])
}

// StoredDecision is a gate decision as stored, as far as its audit entry
// covers it.
type StoredDecision struct {
	ID, ReleaseID, Decision, Doc string
	// The columns the reconciler reads beside the document: when the
	// decision was made, by whom, under which policy version.
	EvaluatedAt   time.Time
	Actor         string
	PolicyVersion int
}

// DecisionIDOf returns the id of the decision a gate decision entry
// records ("" for any other entry, or one naming none).
func DecisionIDOf(e AuditEntry) string {
	var data DecisionAuditData
	if e.Action != ActionGateDecision || json.Unmarshal(e.Data, &data) != nil {
		return ""
	}
	return data.DecisionID
}

// CheckDecisionEntry holds a gate decision entry e to its stored decision
// (nil when it is missing) and returns the break, nil when they agree.
func CheckDecisionEntry(e AuditEntry, d *StoredDecision) *AuditBreak {
	var data DecisionAuditData
	if err := json.Unmarshal(e.Data, &data); err != nil || data.DecisionID == "" {
		return &AuditBreak{Seq: e.Seq, Reason: "a gate decision entry that names no decision"}
	}
	brk := func(format string, args ...any) *AuditBreak {
		return &AuditBreak{Seq: e.Seq, DecisionID: data.DecisionID, Reason: "gate decision " + data.DecisionID + ": " + fmt.Sprintf(format, args...)}
	}
	switch {
	case d == nil:
		return brk("its row is missing from gate_decisions (deleted)")
	case d.Decision != string(data.Decision):
		return brk("gate_decisions says %q, its audit entry recorded %q (the decision was edited)", d.Decision, data.Decision)
	case "release:"+d.ReleaseID != e.Subject:
		return brk("gate_decisions names release %s, its audit entry %s (the decision was edited)", d.ReleaseID, strings.TrimPrefix(e.Subject, "release:"))
	case data.DocSHA256 != "" && DecisionDocSHA256([]byte(d.Doc)) != data.DocSHA256:
		return brk("its document does not match the SHA-256 recorded in its audit entry (the document was edited)")
	case !d.EvaluatedAt.IsZero() && !d.EvaluatedAt.Equal(e.At):
		return brk("gate_decisions says it was made at %s, its audit entry at %s (the time was edited: reports judge deployments by it)",
			d.EvaluatedAt.UTC().Format(time.RFC3339Nano), e.At.UTC().Format(time.RFC3339Nano))
	case d.Actor != e.Actor:
		return brk("gate_decisions names actor %q, its audit entry %q (the actor was edited)", d.Actor, e.Actor)
	case d.PolicyVersion != data.PolicyVersion:
		return brk("gate_decisions names policy version %d, its audit entry %d (the version was edited)", d.PolicyVersion, data.PolicyVersion)
	}
	return nil
}

// ParseAuditHead reads a head kept outside the database, as GET
// /api/v1/audit/head gave it: its 64-hex-digit hash, optionally after its
// row number and a colon (SEQ:HASH). "" is no anchor.
func ParseAuditHead(s string) (AuditHead, error) {
	if s == "" {
		return AuditHead{}, nil
	}
	var head AuditHead
	hash := s
	if seq, h, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.ParseInt(seq, 10, 64)
		if err != nil || n < 0 {
			return head, errors.New("the part before ':' must be the head's row number")
		}
		head.Seq, hash = n, h
	}
	hash = strings.ToLower(hash)
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		return head, errors.New("want the head's hash, 64 hex digits (or SEQ:HASH)")
	}
	head.Hash = hash
	return head, nil
}

// AuditAnchor holds a chain walk to a head kept outside the database: the
// chain must reach it, with row Expect.Seq having hash Expect.Hash (when
// Expect.Seq is 0, some row must have that hash). An empty Expect.Hash is
// no anchor. Feed it every intact row in order (Check), then End.
type AuditAnchor struct {
	Expect  AuditHead
	reached bool
}

// Check checks row e against the anchor.
func (a *AuditAnchor) Check(e AuditEntry) *AuditBreak {
	switch {
	case a.Expect.Hash == "" || a.reached:
	case a.Expect.Seq == e.Seq && e.Hash != a.Expect.Hash:
		return &AuditBreak{Seq: e.Seq, Reason: fmt.Sprintf("row %d has hash %s, not the expected head %s (the chain was rewritten from here or before)", e.Seq, e.Hash, a.Expect.Hash)}
	case e.Hash == a.Expect.Hash && (a.Expect.Seq == 0 || a.Expect.Seq == e.Seq):
		a.reached = true
	}
	return nil
}

// End fails a walk whose last row was last without reaching the anchor.
func (a *AuditAnchor) End(last int64) *AuditBreak {
	if a.Expect.Hash == "" || a.reached || (a.Expect.Seq == 0 && a.Expect.Hash == GenesisHash) {
		return nil
	}
	if a.Expect.Seq > 0 {
		return &AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("the chain ends at row %d, before the expected head at row %d (rows were deleted from its end)", last, a.Expect.Seq)}
	}
	return &AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("no row has the expected head hash %s: the chain, ending at row %d, was cut short or rewritten", a.Expect.Hash, last)}
}
