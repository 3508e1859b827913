-- +goose Up
-- Each poller's watermark: the newest source update stamp it has read, so
-- a restart (or another replica taking the lease) resumes where it left.
CREATE TABLE poll_watermarks (
    connector text PRIMARY KEY,
    watermark TIMESTAMP NOT NULL,
    polled_at TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE poll_watermarks;
