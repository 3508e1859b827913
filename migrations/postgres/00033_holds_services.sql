-- +goose Up
-- A team hold lists the services the team was known to release when it was
-- placed (core.Hold.Services, a JSON array): their checks are held whatever
-- team they name. Holds placed before this list none ('').
ALTER TABLE holds ADD COLUMN services TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE holds DROP COLUMN services;
