-- The migration backup's download URL (a presigned link: its query string is
-- a credential) is encrypted at rest like every secret. migration_source_url
-- keeps only what the API shows: the URL up to its query string. Rows written
-- before this migration are sealed by the api at start
-- (db::environments::seal_migration_sources), which needs the secret key.
ALTER TABLE environments ADD COLUMN migration_source_encrypted TEXT;
