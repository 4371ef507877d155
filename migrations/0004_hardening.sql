-- Odoo's master password (admin_passwd in odoo.conf), generated per
-- environment and encrypted like every secret; when a project admin last read
-- it through GET /environments/{id}/credentials, and who.
ALTER TABLE environments
    ADD COLUMN admin_passwd_encrypted TEXT,
    ADD COLUMN credentials_read_at TIMESTAMPTZ,
    ADD COLUMN credentials_read_by UUID REFERENCES users (id) ON DELETE SET NULL;
