package core

import "time"

// Replica is one running tollgate as it last told the database: what GET
// /api/v1/replicas lists, so that an upgrade's progress, a replica left
// on an older build or one whose clock is off can be seen in one place.
type Replica struct {
	// ID names the process: host/pid/random.
	ID string `json:"id"`
	// Version is its build; SchemaKnown the newest migration it knows.
	Version     string    `json:"version"`
	SchemaKnown int64     `json:"schema_known"`
	StartedAt   time.Time `json:"started_at"`
	// SeenAt is when it last told the database it runs.
	SeenAt time.Time `json:"seen_at"`
	// ClockSkewMS is the database server's clock less the replica's, in
	// milliseconds, when last measured (PostgreSQL only).
	ClockSkewMS *int64 `json:"clock_skew_ms,omitempty"`
	// Live reports whether it was seen lately (within three of its
	// checks); a replica killed leaves its row until a day has passed.
	Live bool `json:"live"`
}
