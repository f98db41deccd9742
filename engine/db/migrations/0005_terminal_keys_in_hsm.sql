-- Terminal request-signing keys now come from the HSM, derived per terminal from the
-- terminal MAC master key (hsm.terminalkeys); the interim copy in the database goes.
ALTER TABLE terminals DROP COLUMN mac_key;
