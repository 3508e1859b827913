-- +goose Up
-- A report's row is written before it is judged (its findings go in a
-- page at a time) and marked finished with its summary. A replica killed
-- in between left a row that read as a report with nothing found, and
-- whose time made the schedule skip its period; only finished reports
-- are listed and count as a schedule's last run, and unfinished ones are
-- removed once they are stale. Rows already stored are finished.
ALTER TABLE reports ADD COLUMN finished BOOLEAN NOT NULL DEFAULT true;

-- +goose Down
-- An older build reads every report as finished: the unfinished ones (a
-- replica died while judging them) go first, with what they had written,
-- or they would read as reports that found nothing and hide their periods.
DELETE FROM report_proofs WHERE report_id IN (SELECT id FROM reports WHERE NOT finished);
DELETE FROM findings WHERE report_id IN (SELECT id FROM reports WHERE NOT finished);
DELETE FROM reports WHERE NOT finished;
ALTER TABLE reports DROP COLUMN finished;
