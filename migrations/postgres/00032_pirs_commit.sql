-- +goose Up
-- A review names the commit whose deployment required it: a release's own
-- pending review no longer lets another commit under the same version
-- label through (core.PIR.HoldsBack). Reviews required before this keep
-- '' (no commit: their release's own checks are left out as before).
ALTER TABLE pirs ADD COLUMN commit_sha TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE pirs DROP COLUMN commit_sha;
