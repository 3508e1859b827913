-- +goose Up
ALTER TABLE incident_services ADD COLUMN active boolean NOT NULL DEFAULT 0;
UPDATE incident_services SET active = (SELECT i.active FROM incidents i WHERE i.key = incident_services.incident_key);
CREATE INDEX incident_services_active ON incident_services (service) WHERE active;

-- +goose Down
DROP INDEX incident_services_active;
ALTER TABLE incident_services DROP COLUMN active;
