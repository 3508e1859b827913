-- +goose Up
-- A release may need one review per commit deployed under its version: a
-- review signed off for one commit says nothing about other code shipped
-- later under the same label, so that deployment requires a review of its
-- own (store/reviews). Reviews are keyed by release and commit.
ALTER TABLE pirs DROP CONSTRAINT pirs_pkey;
ALTER TABLE pirs ADD PRIMARY KEY (release_id, commit_sha);

-- +goose Down
-- One review per release again: the earliest required of each is kept.
DELETE FROM pirs p WHERE EXISTS (SELECT 1 FROM pirs q WHERE q.release_id = p.release_id
    AND (q.required_at, q.commit_sha) < (p.required_at, p.commit_sha));
ALTER TABLE pirs DROP CONSTRAINT pirs_pkey;
ALTER TABLE pirs ADD PRIMARY KEY (release_id);
