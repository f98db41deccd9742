-- 2601 reversal: a reversed request's msgid is marked in the idempotency log, and a
-- reversal that arrives before its original leaves a tombstone row there, so that a
-- late or repeated original is refused instead of being applied or answered.
ALTER TABLE tx_log
    ADD COLUMN tombstone boolean NOT NULL DEFAULT false,
    ADD COLUMN reversed_by_msgid text,
    ADD CHECK (NOT tombstone OR answer IS NULL);

-- 2601 finds the settlement a msgid produced.
CREATE INDEX settlements_by_msgid ON settlements (fixmedins_code, msgid);
