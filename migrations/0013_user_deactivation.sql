-- A deactivated user keeps their row, memberships and history (deployments
-- name who triggered them) but cannot log in; deactivating ends every
-- session of theirs. Reactivating lets them log in again.
ALTER TABLE users ADD COLUMN deactivated_at TIMESTAMPTZ;
