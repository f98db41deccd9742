-- Card and e-card authentication (DESIGN.md §4): the issuer's record of every social
-- security card, the engine's single-use challenges for INTERNAL AUTHENTICATE (9301),
-- and the burned e-card token ids. Challenges and burned ids live here rather than in
-- a process so that any engine process can consume what another one issued; each is
-- consumed by one atomic statement. Expired rows are deleted in bounded batches by
-- the engine (engine.txn.cardauth.purge_expired).

CREATE TABLE cards (
    card_sn         text PRIMARY KEY CHECK (card_sn ~ '^[0-9A-F]{32}$'),
    card_no         text NOT NULL UNIQUE CHECK (card_no ~ '^[0-9A-Z]{9}$'),
    psn_no          text NOT NULL REFERENCES persons,
    insuplc_admdvs  text NOT NULL CHECK (insuplc_admdvs ~ '^[0-9]{6}$'),
    generation      smallint NOT NULL CHECK (generation IN (2, 3)),
    status          text NOT NULL CHECK (status IN ('active', 'revoked')),
    issue_date      date NOT NULL,
    expiry_date     date NOT NULL,
    CHECK (expiry_date > issue_date)
);
-- A person may hold a revoked card and its replacement.
CREATE INDEX cards_psn_no ON cards (psn_no);

CREATE TABLE card_challenges (
    challenge    bytea PRIMARY KEY CHECK (length(challenge) = 8),
    terminal_id  text NOT NULL REFERENCES terminals,
    card_sn      text NOT NULL REFERENCES cards,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    CHECK (expires_at > created_at),
    CHECK (used_at IS NULL OR used_at >= created_at)
);
CREATE INDEX card_challenges_expires_at ON card_challenges (expires_at);

CREATE TABLE ecard_tokens_used (
    token_id    text PRIMARY KEY CHECK (token_id ~ '^[A-Za-z0-9]{16,40}$'),
    used_at     timestamptz NOT NULL DEFAULT now(),
    -- After this the token can no longer be accepted, so its id may be forgotten.
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ecard_tokens_used_expires_at ON ecard_tokens_used (expires_at);
