-- +goose Up
-- Four-eyes proposals: a policy or mapping change stored until a second
-- admin confirms it (or it is withdrawn). source is the proposed document.
CREATE TABLE proposals (
    id           text PRIMARY KEY,
    kind         text NOT NULL,
    target       text NOT NULL DEFAULT '',
    source       text NOT NULL,
    status       text NOT NULL,
    proposed_by  text NOT NULL,
    proposed_at  TIMESTAMP NOT NULL,
    decided_by   text NOT NULL DEFAULT '',
    decided_at   TIMESTAMP,
    base_version integer NOT NULL DEFAULT 0
);
CREATE INDEX proposals_status ON proposals (status, proposed_at);

-- What-if simulation reads the gate checks of a period.
CREATE INDEX gate_decisions_evaluated_at ON gate_decisions (evaluated_at);

-- +goose Down
DROP INDEX gate_decisions_evaluated_at;
DROP TABLE proposals;
