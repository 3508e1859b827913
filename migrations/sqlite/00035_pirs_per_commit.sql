-- +goose Up
-- A release may need one review per commit deployed under its version: a
-- review signed off for one commit says nothing about other code shipped
-- later under the same label, so that deployment requires a review of its
-- own (store/reviews). Reviews are keyed by release and commit; SQLite
-- cannot change a primary key in place, so the table is rebuilt.
CREATE TABLE pirs_by_commit (
    release_id    text NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    service       text NOT NULL,
    version       text NOT NULL,
    environment   text NOT NULL,
    team          text NOT NULL,
    status        text NOT NULL,
    required_at   TIMESTAMP NOT NULL,
    signed_off_by text NOT NULL DEFAULT '',
    signed_off_at TIMESTAMP,
    summary       text NOT NULL DEFAULT '',
    updated_at    TIMESTAMP,
    commit_sha    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (release_id, commit_sha)
);
INSERT INTO pirs_by_commit (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary, updated_at, commit_sha)
    SELECT release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary, updated_at, commit_sha FROM pirs;
DROP TABLE pirs;
ALTER TABLE pirs_by_commit RENAME TO pirs;
CREATE INDEX pirs_updated ON pirs (updated_at);
CREATE INDEX pirs_pending_team ON pirs (lower(team)) WHERE status = 'pending';
CREATE INDEX pirs_pending_service ON pirs (lower(service)) WHERE status = 'pending';
CREATE INDEX pirs_team_required_ci ON pirs (lower(team), required_at);
CREATE INDEX pirs_service_required ON pirs (lower(service), required_at);

-- +goose Down
CREATE TABLE pirs_by_release (
    release_id    text PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
    service       text NOT NULL,
    version       text NOT NULL,
    environment   text NOT NULL,
    team          text NOT NULL,
    status        text NOT NULL,
    required_at   TIMESTAMP NOT NULL,
    signed_off_by text NOT NULL DEFAULT '',
    signed_off_at TIMESTAMP,
    summary       text NOT NULL DEFAULT '',
    updated_at    TIMESTAMP,
    commit_sha    TEXT NOT NULL DEFAULT ''
);
-- One review per release again: the earliest required of each is kept.
INSERT INTO pirs_by_release (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary, updated_at, commit_sha)
    SELECT release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary, updated_at, commit_sha FROM pirs p
    WHERE NOT EXISTS (SELECT 1 FROM pirs q WHERE q.release_id = p.release_id
        AND (q.required_at < p.required_at OR (q.required_at = p.required_at AND q.commit_sha < p.commit_sha)));
DROP TABLE pirs;
ALTER TABLE pirs_by_release RENAME TO pirs;
CREATE INDEX pirs_updated ON pirs (updated_at);
CREATE INDEX pirs_pending_team ON pirs (lower(team)) WHERE status = 'pending';
CREATE INDEX pirs_pending_service ON pirs (lower(service)) WHERE status = 'pending';
CREATE INDEX pirs_team_required_ci ON pirs (lower(team), required_at);
CREATE INDEX pirs_service_required ON pirs (lower(service), required_at);
