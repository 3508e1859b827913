-- +goose Up
-- A report filtered by a compliance control keeps, beside its findings,
-- the proof of each compliant deployment: the evidence requirements
-- carrying the control as judged at its start and the evidence records
-- they matched (doc is the whole core.ControlProof document).
CREATE TABLE report_proofs (
    report_id     text NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    deployment_id text NOT NULL,
    doc           text NOT NULL,
    PRIMARY KEY (report_id, seq)
);

-- +goose Down
DROP TABLE report_proofs;
