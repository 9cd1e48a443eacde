-- The collector's store (issue #17): one row per gateway with where its chain stands, and
-- every entry each gateway shipped, as the verified line it was on the gateway's disk.

CREATE TABLE gateways (
    id          TEXT PRIMARY KEY,
    -- From the gateway's log_created entry; every checkpoint must name it.
    log_id      TEXT NOT NULL,
    -- The seq the next shipped entry must carry, and the hash it must link to.
    next_seq    BIGINT NOT NULL,
    head_hash   BYTEA NOT NULL,
    entries     BIGINT NOT NULL DEFAULT 0,
    -- The last signed checkpoint received: entries after it are chained but not yet signed.
    last_checkpoint_seq BIGINT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE entries (
    gateway_id  TEXT NOT NULL REFERENCES gateways (id),
    seq         BIGINT NOT NULL,
    -- Unix milliseconds, as written by the gateway.
    time_ms     BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    hash        BYTEA NOT NULL,
    -- Extracted from decision payloads for queries; NULL for other kinds.
    app         TEXT,
    originator  TEXT,
    effect      TEXT,
    payload     JSONB NOT NULL,
    -- The exact line as on the gateway's disk: re-verification hashes these bytes.
    line        TEXT NOT NULL,
    PRIMARY KEY (gateway_id, seq)
);

CREATE INDEX entries_time ON entries (gateway_id, time_ms);
CREATE INDEX entries_app ON entries (app, time_ms) WHERE app IS NOT NULL;
CREATE INDEX entries_originator ON entries (originator, time_ms) WHERE originator IS NOT NULL;
