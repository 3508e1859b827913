-- +goose Up
-- A report's row is written before it is judged (its findings go in a
-- page at a time) and marked finished with its summary. A replica killed
-- in between left a row that read as a report with nothing found, and
-- whose time made the schedule skip its period; only finished reports
-- are listed and count as a schedule's last run, and unfinished ones are
-- removed once they are stale. Rows already stored are finished.
ALTER TABLE reports ADD COLUMN finished BOOLEAN NOT NULL DEFAULT true;

-- +goose Down
ALTER TABLE reports DROP COLUMN finished;
