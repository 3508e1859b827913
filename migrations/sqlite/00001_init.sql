-- +goose Up
-- The canonical model. Documents (doc) hold the canonical JSON of a record;
-- the columns beside them are what queries filter on.

CREATE TABLE changes (
    key               text PRIMARY KEY,
    source            text NOT NULL,
    version           integer NOT NULL,
    type              text NOT NULL,
    state             text NOT NULL,
    approval          text NOT NULL,
    doc               TEXT NOT NULL,
    source_updated_at TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);

CREATE TABLE change_versions (
    key         text NOT NULL REFERENCES changes (key) ON DELETE CASCADE,
    version     integer NOT NULL,
    valid_from  TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (key, version)
);
CREATE INDEX change_versions_valid_from ON change_versions (key, valid_from);

CREATE TABLE incidents (
    key               text PRIMARY KEY,
    source            text NOT NULL,
    version           integer NOT NULL,
    priority          integer NOT NULL,
    major             BOOLEAN NOT NULL,
    state             text NOT NULL,
    active            BOOLEAN NOT NULL,
    global            BOOLEAN NOT NULL, -- lists no affected services
    doc               TEXT NOT NULL,
    source_updated_at TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
CREATE INDEX incidents_active ON incidents (active) WHERE active;

-- The affected services of the newest version of each incident.
CREATE TABLE incident_services (
    incident_key text NOT NULL REFERENCES incidents (key) ON DELETE CASCADE,
    service      text NOT NULL,
    PRIMARY KEY (service, incident_key)
);

CREATE TABLE incident_versions (
    key         text NOT NULL REFERENCES incidents (key) ON DELETE CASCADE,
    version     integer NOT NULL,
    valid_from  TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (key, version)
);
CREATE INDEX incident_versions_valid_from ON incident_versions (key, valid_from);

CREATE TABLE releases (
    id              text PRIMARY KEY,
    service         text NOT NULL,
    version         text NOT NULL,
    environment     text NOT NULL,
    team            text NOT NULL DEFAULT '',
    commit_sha      text NOT NULL DEFAULT '',
    changes         TEXT NOT NULL DEFAULT '[]',
    fixes_incidents TEXT NOT NULL DEFAULT '[]',
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    UNIQUE (service, version, environment)
);
CREATE INDEX releases_created_at ON releases (created_at);

CREATE TABLE deployments (
    id          text PRIMARY KEY,
    release_id  text NOT NULL DEFAULT '',
    service     text NOT NULL,
    environment text NOT NULL,
    version     text NOT NULL,
    commit_sha  text NOT NULL DEFAULT '',
    team        text NOT NULL DEFAULT '',
    status      text NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    actor       text NOT NULL DEFAULT '',
    changes     TEXT NOT NULL DEFAULT '[]',
    incidents   TEXT NOT NULL DEFAULT '[]',
    decision_id text NOT NULL DEFAULT '',
    provider    text NOT NULL,
    run_id      text NOT NULL,
    url         text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    UNIQUE (provider, run_id, service, environment)
);
CREATE INDEX deployments_env_started ON deployments (environment, started_at);
CREATE INDEX deployments_service_started ON deployments (service, started_at);

CREATE TABLE pirs (
    release_id    text PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
    service       text NOT NULL,
    version       text NOT NULL,
    environment   text NOT NULL,
    team          text NOT NULL,
    status        text NOT NULL,
    required_at   TIMESTAMP NOT NULL,
    signed_off_by text NOT NULL DEFAULT '',
    signed_off_at TIMESTAMP,
    summary       text NOT NULL DEFAULT ''
);
CREATE INDEX pirs_team_pending ON pirs (team) WHERE status = 'pending';

CREATE TABLE gate_decisions (
    id             text PRIMARY KEY,
    release_id     text NOT NULL,
    decision       text NOT NULL,
    emergency      BOOLEAN NOT NULL DEFAULT false,
    policy_version integer NOT NULL,
    evaluated_at   TIMESTAMP NOT NULL,
    actor          text NOT NULL DEFAULT '',
    doc            TEXT NOT NULL -- the whole decision: request, reasons, facts
);
CREATE INDEX gate_decisions_release ON gate_decisions (release_id, evaluated_at);

CREATE TABLE inbox_events (
    id            text PRIMARY KEY,
    connector     text NOT NULL,
    type          text NOT NULL DEFAULT '',
    dedupe_key    text NOT NULL,
    headers       TEXT NOT NULL DEFAULT '{}',
    body          BLOB NOT NULL,
    received_at   TIMESTAMP NOT NULL,
    status        text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    attempts      integer NOT NULL DEFAULT 0,
    record        text NOT NULL DEFAULT '',
    claimed_until TIMESTAMP,
    processed_at  TIMESTAMP,
    UNIQUE (connector, dedupe_key)
);
CREATE INDEX inbox_events_pending ON inbox_events (received_at) WHERE status = 'pending';
CREATE INDEX inbox_events_status ON inbox_events (status, id);

CREATE TABLE mapping_profiles (
    name       text NOT NULL,
    version    integer NOT NULL,
    source     text NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    updated_at TIMESTAMP NOT NULL,
    updated_by text NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
);

CREATE TABLE policy_versions (
    version    integer PRIMARY KEY,
    source     text NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by text NOT NULL DEFAULT ''
);

CREATE TABLE api_tokens (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL,
    hash       text NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    created_by text NOT NULL DEFAULT '',
    revoked_at TIMESTAMP
);

-- Append-only and hash-chained. data is text, not TEXT: the hash covers
-- the exact bytes, and TEXT would reorder keys.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        TIMESTAMP NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL,
    data      text NOT NULL DEFAULT '',
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- Scheduled work runs on the replica that holds the lease row.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

CREATE TABLE reports (
    id         text PRIMARY KEY,
    kind       text NOT NULL,
    params     TEXT NOT NULL,
    summary    TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by text NOT NULL DEFAULT ''
);

CREATE TABLE findings (
    report_id     text NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    deployment_id text NOT NULL,
    code          text NOT NULL,
    message       text NOT NULL,
    ref           text NOT NULL DEFAULT '',
    evidence      TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (report_id, seq)
);

-- +goose Down
DROP TABLE findings;
DROP TABLE reports;
DROP TABLE leases;
DROP TABLE audit_log;
DROP TABLE api_tokens;
DROP TABLE policy_versions;
DROP TABLE mapping_profiles;
DROP TABLE inbox_events;
DROP TABLE gate_decisions;
DROP TABLE pirs;
DROP TABLE deployments;
DROP TABLE releases;
DROP TABLE incident_versions;
DROP TABLE incident_services;
DROP TABLE incidents;
DROP TABLE change_versions;
DROP TABLE changes;
