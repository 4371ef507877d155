-- The password of Odoo's `admin` user, generated (and encrypted) by the
-- pipeline; database_initialized_at is when oec ran `-i base` on the
-- environment's database, odoo_admin_password_set_at when it then set that
-- password. A database oec did not initialize (restored from a backup, or
-- initialized before this migration) keeps its users as they are.
ALTER TABLE environments
    ADD COLUMN odoo_admin_password_encrypted TEXT,
    ADD COLUMN database_initialized_at TIMESTAMPTZ,
    ADD COLUMN odoo_admin_password_set_at TIMESTAMPTZ;
