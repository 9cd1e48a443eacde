-- The shared state of `palisade group server` instances (issue #17.4): the registry of
-- groups, member keys and gateways (SER-027), open and completed challenges and served
-- challenge requests (SER-012 single use), and the log of issued challenges. Times are Unix
-- seconds; rows past their expiry are deleted by the instances.

CREATE TABLE group_gateways (
    id         TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL CHECK (length(public_key) = 32)
);

CREATE TABLE group_groups (
    id TEXT PRIMARY KEY
);

CREATE TABLE group_members (
    grp        TEXT NOT NULL REFERENCES group_groups (id) ON DELETE CASCADE,
    device     TEXT NOT NULL,
    public_key BYTEA NOT NULL CHECK (length(public_key) = 32),
    PRIMARY KEY (grp, device)
);

CREATE TABLE group_representation (
    grp     TEXT NOT NULL REFERENCES group_groups (id) ON DELETE CASCADE,
    gateway TEXT NOT NULL REFERENCES group_gateways (id) ON DELETE CASCADE,
    PRIMARY KEY (grp, gateway)
);

-- An issued challenge waiting for its answer. `ephemeral` (independent mode) is the server's
-- X25519 secret sealed under a key only holders of the server's identity key derive.
CREATE TABLE group_pending (
    nonce      BYTEA PRIMARY KEY CHECK (length(nonce) = 32),
    mode       SMALLINT NOT NULL,
    grp        TEXT NOT NULL,
    gateway    TEXT NOT NULL,
    digest     BYTEA NOT NULL CHECK (length(digest) = 32),
    expires_at BIGINT NOT NULL,
    ephemeral  BYTEA
);
CREATE INDEX group_pending_expiry ON group_pending (expires_at);

-- Spent challenge nonces, until the challenge's own expiry.
CREATE TABLE group_completed (
    nonce      BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX group_completed_expiry ON group_completed (expires_at);

-- Served challenge requests (by their nonce), until they could no longer pass the time check.
CREATE TABLE group_requests (
    nonce      BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX group_requests_expiry ON group_requests (expires_at);

-- Issued challenges, to name why an answer to another challenge is refused.
CREATE TABLE group_issued (
    digest    BYTEA PRIMARY KEY,
    grp       TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE INDEX group_issued_time ON group_issued (issued_at);
