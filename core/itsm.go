package core

import "time"

// Change creation statuses: the durable record of a change tollgate opens
// for a release that links none.
const (
	CreationPending = "pending" // recorded, the ITSM being asked
	CreationCreated = "created" // the ITSM answered with the change's key
	CreationFailed  = "failed"  // the ITSM refused; a later check may try again
)

// ChangeCreation is the record of the change opened for one release.
type ChangeCreation struct {
	ReleaseID string    `json:"release_id"`
	Connector string    `json:"connector"`
	Status    string    `json:"status"`
	ChangeKey string    `json:"change_key,omitempty"`
	Error     string    `json:"error,omitempty"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// OutboxNote is one work note waiting to be written back to an ITSM change.
type OutboxNote struct {
	ID        string    `json:"id"`
	DedupeKey string    `json:"dedupe_key"`
	Connector string    `json:"connector"`
	ChangeKey string    `json:"change_key"`
	Body      string    `json:"body"`
	Status    string    `json:"status"` // pending or done
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	NextAt    time.Time `json:"next_at"`
}

// Reason codes of change creation (the DESIGN.md rule table).
const (
	CodeChangeCreated        = "CHANGE_CREATED"
	CodeChangeCreationFailed = "CHANGE_CREATION_FAILED"
)
