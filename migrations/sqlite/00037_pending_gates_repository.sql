-- +goose Up
-- The repository (GitHub) or project path (GitLab) a CI gate request comes
-- from: the requests waiting at once are capped per repository, so one
-- pipeline's flood cannot crowd out every other team's. Waiting requests
-- stored before are filled in from their answer target; an older build
-- writes '' (uncounted) and reads nothing of it.
ALTER TABLE pending_gates ADD COLUMN repository text NOT NULL DEFAULT '';
UPDATE pending_gates SET repository = lower(COALESCE(NULLIF(json_extract(target, '$.repository'), ''), json_extract(target, '$.project'), ''))
    WHERE state = 'pending';
CREATE INDEX pending_gates_waiting_repository ON pending_gates (connector, repository) WHERE state = 'pending';

-- +goose Down
DROP INDEX pending_gates_waiting_repository;
ALTER TABLE pending_gates DROP COLUMN repository;
