-- Tamper evidence for the journal (DESIGN.md §6): every entry is sealed into a hash
-- chain per insured region, each seal holding the hash of the one before it.
--
-- Sealing runs after commit, not inside the settling transaction, so settlements of
-- one region never queue on a chain head. Each entry records the id of the
-- transaction that created it. A sealing run takes the entries whose creating
-- transaction lies between the previous run's horizon and the oldest transaction still
-- running now (pg_snapshot_xmin): all of those transactions have ended, so their
-- entries are final and visible, and none can appear later in that window. It appends
-- them, in (transaction id, entry id) order, to their region's chain. The chain order
-- is the seal order (seal_seq), which `yikatong ledger verify` replays.
ALTER TABLE journal_entries ADD COLUMN created_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX journal_entries_created_xid ON journal_entries (created_xid, entry_id);

CREATE TABLE journal_seals (
    entry_id        bigint PRIMARY KEY REFERENCES journal_entries,
    insuplc_admdvs  text NOT NULL,
    seal_seq        bigint NOT NULL,
    prev_hash       bytea NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash      bytea NOT NULL CHECK (length(entry_hash) = 32),
    sealed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (insuplc_admdvs, seal_seq)
);

CREATE TRIGGER journal_seals_append_only BEFORE UPDATE OR DELETE ON journal_seals
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Every entry created by a transaction below sealed_below_xid is sealed, so a
-- sealing run looks from there only.
CREATE TABLE journal_seal_state (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    sealed_below_xid  xid8 NOT NULL
);
INSERT INTO journal_seal_state (sealed_below_xid) VALUES ('0');
