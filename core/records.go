package core

import (
	"encoding/json"
	"strings"
	"time"
)

// Role is what an API token may do.
type Role string

// Roles. auditor is read-only; change_manager signs off reviews and runs
// reports; ci asks the gate and reports deployments; admin does everything.
const (
	RoleAdmin         Role = "admin"
	RoleChangeManager Role = "change_manager"
	RoleAuditor       Role = "auditor"
	RoleCI            Role = "ci"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleChangeManager, RoleAuditor, RoleCI:
		return true
	}
	return false
}

// Token is an API token. Only the SHA-256 of its secret is stored.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	Hash      string     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// TokenActor names a token's holder in the audit trail and in records'
// actor fields: "token:<name>(<id>)", followed by " via <channel>" when
// the request came through one (the UI). ActorTokenID reads the id back.
func TokenActor(t Token, channel string) string {
	a := "token:" + t.Name + "(" + t.ID + ")"
	if channel != "" {
		a += " via " + channel
	}
	return a
}

// ActorTokenID returns the id of the token an actor string (TokenActor)
// names, "" when it names none ("system", a name without a token). The id
// is the last parenthesized part, so a name holding parentheses does not
// confuse it.
func ActorTokenID(actor string) string {
	if !strings.HasPrefix(actor, "token:") {
		return ""
	}
	if i := strings.LastIndex(actor, ") via "); i > 0 && !strings.Contains(actor[i+len(") via "):], ")") {
		actor = actor[:i+1]
	}
	if !strings.HasSuffix(actor, ")") {
		return ""
	}
	open := strings.LastIndexByte(actor, '(')
	if open < 0 {
		return ""
	}
	return actor[open+1 : len(actor)-1]
}

// Inbox event statuses.
const (
	EventPending     = "pending"
	EventProcessed   = "processed"
	EventQuarantined = "quarantined"
	EventIgnored     = "ignored"
)

// Event is one raw inbound webhook delivery, stored before it is
// acknowledged and normalized afterwards.
type Event struct {
	ID        string `json:"id"`
	Connector string `json:"connector"`
	// Type is the vendor's event type (X-GitHub-Event, X-Gitlab-Event,
	// webhookEvent, sys_class_name, build.phase …) as the connector read it.
	Type string `json:"type"`
	// DedupeKey is the vendor's delivery id, or "sha256:<hex>" of the body.
	DedupeKey  string            `json:"dedupe_key"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       json.RawMessage   `json:"body"`
	ReceivedAt time.Time         `json:"received_at"`
	Status     string            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	// Attempts counts the normalizer's claims of the event; LastError is
	// the last transient failure of a pending event and ClaimedUntil the
	// end of its current claim (a pending event with attempts and an error
	// is one the normalizer keeps failing on).
	Attempts     int        `json:"attempts"`
	LastError    string     `json:"last_error,omitempty"`
	ClaimedUntil *time.Time `json:"claimed_until,omitempty"`
	// Record names what the event became, e.g. "change:CHG0000024".
	Record      string     `json:"record,omitempty"`
	ProcessedAt *time.Time `json:"processed_at,omitempty"`
}

// EventOutcome is how processing settled one pending event: processed,
// quarantined or ignored, with a reason and the record it became.
type EventOutcome struct {
	ID     string
	Status string
	Reason string
	Record string
}

// MappingProfile is one stored version of a field-mapping profile. Source is
// the YAML text exactly as the admin wrote it.
type MappingProfile struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Source    string    `json:"source"`
	Deleted   bool      `json:"deleted,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// PolicyVersion is one stored version of the policy document.
type PolicyVersion struct {
	Version   int       `json:"version"`
	Source    string    `json:"source"` // YAML text as submitted
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}
