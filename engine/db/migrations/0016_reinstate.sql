-- 2601 for a cancellation (2208, 2103): reversing a cancel whose answer was lost puts
-- the settlement back exactly as it was — a 'reinstate' journal entry that posts the
-- settle entry's postings again, the account charged again, the accumulators taken
-- again and the fee details settled again. settlement/cancellation.py decides it and
-- refuses when the visit, the account or the year's limits changed since the cancel.
--
-- A settlement's journal entries now alternate settle, cancel, reinstate, cancel, ...:
-- it is posted once, and cancelled and reinstated any number of times, each guarded by
-- the settlement's state under its lock (the WHERE on the state it was decided from).

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_kind_check
    CHECK (kind IN ('opening', 'settle', 'cancel', 'reinstate'));
DROP INDEX journal_one_entry_per_settlement_kind;
CREATE UNIQUE INDEX journal_one_settle_entry_per_settlement
    ON journal_entries (setl_id) WHERE kind = 'settle';
CREATE INDEX journal_entries_by_settlement ON journal_entries (setl_id) WHERE setl_id IS NOT NULL;
-- The cancellation a 2601 names by its msgid.
CREATE INDEX journal_cancel_entries_by_msgid
    ON journal_entries (fixmedins_code, msgid) WHERE kind = 'cancel';

-- Which settlement a cancellation freed a fee detail from: a reinstatement takes the
-- visit's unsettled details only when they are exactly these.
ALTER TABLE fee_details ADD COLUMN released_setl_id text;

-- A settlement's cancel or reinstate entry with its postings; its id.
CREATE FUNCTION yk_post_entry(p_kind text, e jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
BEGIN
    INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id, fixmedins_code, msgid)
    VALUES (p_kind, e->>'insuplc_admdvs', e->>'setl_id', e->>'fixmedins_code', e->>'msgid')
    RETURNING entry_id INTO entry;
    INSERT INTO postings (entry_id, account, amount_fen)
    SELECT entry, p.account, p.amount_fen
    FROM jsonb_to_recordset(e->'postings') AS p(account text, amount_fen bigint);
    RETURN entry;
END $$;

-- A decided cancellation (as in 0009), now remembering what it freed.
CREATE OR REPLACE FUNCTION yk_cancel_settlement(c jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    n integer;
BEGIN
    entry := yk_post_entry('cancel', c);
    UPDATE settlements SET state = c->>'state', cancel_entry_id = entry,
        cancel_msgid = c->>'msgid', cancelled_at = (c->>'cancelled_at')::timestamptz
    WHERE setl_id = c->>'setl_id' AND state = c->>'state_before';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'cancellation of %: the settlement changed under its lock',
            c->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    UPDATE fee_details SET setl_id = NULL, released_setl_id = setl_id
    WHERE setl_id = c->>'setl_id';
    PERFORM yk_set_account_and_accumulators(c, 'cancellation');
END $$;

-- The account and the accumulators a cancellation or a reinstatement leaves, each
-- guarded by what the decision saw.
CREATE FUNCTION yk_set_account_and_accumulators(c jsonb, what text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE persons SET acct_balance_fen = (c->>'balance_after_fen')::bigint
    WHERE psn_no = c->>'psn_no' AND acct_balance_fen = (c->>'balance_before_fen')::bigint;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION '% of %: the personal account changed under its lock',
            what, c->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    UPDATE person_accumulators SET
        deductible_used_fen = (c->'accumulators'->>'deductible_used_fen')::bigint,
        outpatient_fund_paid_fen = (c->'accumulators'->>'outpatient_fund_paid_fen')::bigint,
        fund_paid_fen = (c->'accumulators'->>'fund_paid_fen')::bigint
    WHERE psn_no = c->>'psn_no' AND year = (c->'accumulators'->>'year')::integer;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION '% of %: no accumulators for its year', what, c->>'setl_id'
            USING ERRCODE = 'internal_error';
    END IF;
END $$;

-- A stored settlement (as in 0009) with its total and the cancellation in effect.
CREATE OR REPLACE FUNCTION yk_settlement_json(p_setl_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'setl_id', s.setl_id, 'mdtrt_id', s.mdtrt_id, 'psn_no', s.psn_no,
        'fixmedins_code', s.fixmedins_code, 'insuplc_admdvs', s.insuplc_admdvs,
        'state', s.state, 'year', s.year,
        'pharmacy', coalesce(s.answer->'setlinfo'->>'clr_type' = '41', false),
        'medfee_sumamt_fen', s.medfee_sumamt_fen,
        'act_pay_dedc_fen', s.act_pay_dedc_fen, 'hifp_pay_fen', s.hifp_pay_fen,
        'fund_pay_sumamt_fen', s.fund_pay_sumamt_fen, 'acct_pay_fen', s.acct_pay_fen,
        'psn_cash_pay_fen', s.psn_cash_pay_fen, 'cancel_msgid', s.cancel_msgid,
        'postings', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                         'account', p.account, 'amount_fen', p.amount_fen) ORDER BY p.posting_id),
                         '[]'::jsonb)
                     FROM postings p WHERE p.entry_id = s.entry_id))
    FROM settlements s WHERE s.setl_id = p_setl_id
$$;

-- What decide_reinstate reads (ReinstateLoad), once yk_lock_for_cancel holds the locks.
CREATE FUNCTION yk_reinstate_json(p_setl_id text, p_mdtrt_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'visit', yk_visit_json(p_mdtrt_id),
        'settlement', yk_settlement_json(p_setl_id),
        'person', (SELECT yk_person_json(psn_no) FROM settlements WHERE setl_id = p_setl_id),
        'limits', (SELECT jsonb_build_object('year', a.year,
                       'deductible_used_fen', a.deductible_used_fen,
                       'outpatient_fund_paid_fen', a.outpatient_fund_paid_fen,
                       'fund_paid_fen', a.fund_paid_fen, 'deductible_fen', a.deductible_fen,
                       'outpatient_limit_fen', a.outpatient_limit_fen,
                       'annual_cap_fen', a.annual_cap_fen)
                   FROM settlements s JOIN person_accumulators a
                     ON a.psn_no = s.psn_no AND a.year = s.year
                   WHERE s.setl_id = p_setl_id),
        'live_setl_id', (SELECT setl_id FROM settlements
                         WHERE mdtrt_id = p_mdtrt_id AND state = 'settled'),
        'unsettled', (SELECT jsonb_build_object(
                          'count', count(*), 'fen', coalesce(sum(det_item_fee_sumamt_fen), 0),
                          'released_count', count(*) FILTER (WHERE released_setl_id = p_setl_id),
                          'released_fen', coalesce(sum(det_item_fee_sumamt_fen)
                                              FILTER (WHERE released_setl_id = p_setl_id), 0))
                      FROM fee_details WHERE mdtrt_id = p_mdtrt_id AND setl_id IS NULL),
        'settle_reversed', (SELECT t.reversed_by_msgid IS NOT NULL
                            FROM settlements s JOIN tx_log t
                              ON t.fixmedins_code = s.fixmedins_code AND t.msgid = s.msgid
                            WHERE s.setl_id = p_setl_id))
$$;

-- 2601: the original's idempotency record (locked: two reversals of one msgid queue
-- here) and what it changed, locked in 2207's order: the settlement a 2207 or 2102
-- produced (to cancel it), or the settlement a 2208 or 2103 cancelled (to reinstate
-- it). An original not found is not locked by anything: the write's tombstone insert
-- then waits on the key for an original in flight, and fails on it if the original
-- commits.
CREATE OR REPLACE FUNCTION yk_load_reversal(facts jsonb, p_fixmedins_code text, p_omsgid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    original jsonb;
    undoes_cancel boolean;
    s_setl_id text;
    s_mdtrt_id text;
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    SELECT jsonb_build_object('infno', infno, 'tombstone', tombstone,
                              'reversed_by_msgid', reversed_by_msgid)
    INTO original FROM tx_log
    WHERE fixmedins_code = p_fixmedins_code AND msgid = p_omsgid FOR UPDATE;
    IF original IS NULL THEN
        RETURN facts || jsonb_build_object('flow', jsonb_build_object('original', NULL));
    END IF;
    undoes_cancel := original->>'infno' IN ('2208', '2103');
    IF undoes_cancel THEN
        SELECT s.setl_id, s.mdtrt_id INTO s_setl_id, s_mdtrt_id
        FROM journal_entries j JOIN settlements s ON s.setl_id = j.setl_id
        WHERE j.kind = 'cancel' AND j.fixmedins_code = p_fixmedins_code
          AND j.msgid = p_omsgid;
    ELSE
        SELECT setl_id, mdtrt_id INTO s_setl_id, s_mdtrt_id FROM settlements
        WHERE fixmedins_code = p_fixmedins_code AND msgid = p_omsgid;
    END IF;
    IF s_setl_id IS NULL THEN
        RETURN facts || jsonb_build_object('flow', jsonb_build_object('original', original));
    END IF;
    PERFORM yk_lock_for_cancel(s_setl_id, s_mdtrt_id);
    facts := yk_relocked(facts);
    IF facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    IF undoes_cancel THEN
        RETURN facts || jsonb_build_object('flow', jsonb_build_object(
            'original', original, 'reinstate', yk_reinstate_json(s_setl_id, s_mdtrt_id)));
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'original', original, 'cancel', yk_cancel_json(s_setl_id, s_mdtrt_id)));
END $$;

-- A decided reinstatement: the settle entry's postings posted again, the settlement
-- cancelled → settled (the WHERE on the cancellation it undoes), the details it freed
-- settled again, the account charged and the accumulators taken (guarded as above).
CREATE FUNCTION yk_reinstate_settlement(r jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    n integer;
BEGIN
    entry := yk_post_entry('reinstate', r);
    UPDATE settlements SET state = r->>'state', cancel_entry_id = NULL, cancel_msgid = NULL,
        cancelled_at = NULL
    WHERE setl_id = r->>'setl_id' AND state = r->>'state_before'
      AND cancel_msgid = r->>'cancel_msgid';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'reinstatement of %: the settlement changed under its lock',
            r->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    UPDATE fee_details SET setl_id = r->>'setl_id', released_setl_id = NULL
    WHERE mdtrt_id = r->>'mdtrt_id' AND setl_id IS NULL AND released_setl_id = r->>'setl_id';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> (r->>'detail_count')::integer THEN
        RAISE EXCEPTION 'reinstatement of %: its fee details changed under the visit lock',
            r->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    PERFORM yk_set_account_and_accumulators(r, 'reinstatement');
END $$;

-- 2601 (as in 0009) with the reinstatement of a cancelled settlement.
CREATE OR REPLACE FUNCTION yk_write_reversal(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := doc->'reversal';
    n integer;
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    IF (r->>'tombstone')::boolean THEN
        INSERT INTO tx_log (fixmedins_code, msgid, infno, request_sha256, tombstone,
                            reversed_by_msgid)
        VALUES (r->>'fixmedins_code', r->>'omsgid', r->>'oinfno',
                decode(repeat('00', 32), 'hex'), true, r->>'msgid');
    END IF;
    IF coalesce(doc->'cancel', 'null'::jsonb) <> 'null'::jsonb THEN
        PERFORM yk_cancel_settlement(doc->'cancel');
    END IF;
    IF coalesce(doc->'reinstate', 'null'::jsonb) <> 'null'::jsonb THEN
        PERFORM yk_reinstate_settlement(doc->'reinstate');
    END IF;
    IF (r->>'mark_reversed')::boolean THEN
        UPDATE tx_log SET reversed_by_msgid = r->>'msgid'
        WHERE fixmedins_code = r->>'fixmedins_code' AND msgid = r->>'omsgid'
          AND reversed_by_msgid IS NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> 1 THEN
            RAISE EXCEPTION 'reversal of %: the original changed under its lock', r->>'omsgid'
                USING ERRCODE = 'internal_error';
        END IF;
    END IF;
END $$;
