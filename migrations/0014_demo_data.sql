-- Demo data is loaded only where it was asked for: a development
-- environment with with_demo (production and staging never get it).
ALTER TABLE environments ADD COLUMN with_demo boolean NOT NULL DEFAULT false;
