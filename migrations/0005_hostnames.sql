-- An environment's public hostname ({subdomain}.{apps_domain}), fixed when it
-- is created or its subdomain changes, unique across the platform: no other
-- project can take it, on any server. The DNS record this environment
-- created (the provider's id): configuring_dns changes only that one.
ALTER TABLE environments
    ADD COLUMN hostname TEXT,
    ADD COLUMN dns_record_id TEXT;

-- Existing environments of organizations with a DNS provider get their
-- hostname now (the oldest one of a clash keeps it); the others get theirs
-- from the api on their next change, or the worker's setting meanwhile.
UPDATE environments e SET hostname = h.hostname
FROM (
    SELECT e2.id, lower(e2.subdomain || '.' || d.apps_domain) AS hostname,
           row_number() OVER (PARTITION BY lower(e2.subdomain || '.' || d.apps_domain)
                              ORDER BY e2.created_at, e2.id) AS rn
    FROM environments e2
    JOIN projects p ON p.id = e2.project_id
    JOIN LATERAL (SELECT apps_domain FROM dns_providers dp WHERE dp.organization_id = p.organization_id
                  ORDER BY dp.created_at, dp.id LIMIT 1) d ON TRUE
) h
WHERE h.id = e.id AND h.rn = 1;

CREATE UNIQUE INDEX environments_hostname ON environments (lower(hostname));
