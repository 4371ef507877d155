-- Login sessions. A login opens one; each refresh rotates its refresh token
-- (only the token whose id is current_refresh may be exchanged, once), and
-- presenting an older one revokes the session as stolen. Access and refresh
-- tokens name their session, so revoking it (logout, a password change, a
-- reused refresh token) ends every token of it at once. Deleting the user
-- deletes its sessions.
CREATE TABLE sessions (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    current_refresh UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at    TIMESTAMPTZ,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_reason  TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
