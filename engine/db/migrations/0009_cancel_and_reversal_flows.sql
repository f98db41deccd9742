-- 2208 cancel settlement and 2601 reversal on the transaction core: one load that locks
-- in 2207's order (visit → settlement → person → accumulators) and one write each,
-- which also claims the msgid and stores the answer. The decisions (what is refused,
-- the negated postings, the accumulators after) are made in settlement/cancellation.py.

-- A stored settlement as a cancellation needs it, with its journal entry's postings.
CREATE FUNCTION yk_settlement_json(p_setl_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'setl_id', s.setl_id, 'mdtrt_id', s.mdtrt_id, 'psn_no', s.psn_no,
        'fixmedins_code', s.fixmedins_code, 'insuplc_admdvs', s.insuplc_admdvs,
        'state', s.state, 'year', s.year,
        'pharmacy', coalesce(s.answer->'setlinfo'->>'clr_type' = '41', false),
        'act_pay_dedc_fen', s.act_pay_dedc_fen, 'hifp_pay_fen', s.hifp_pay_fen,
        'fund_pay_sumamt_fen', s.fund_pay_sumamt_fen, 'acct_pay_fen', s.acct_pay_fen,
        'psn_cash_pay_fen', s.psn_cash_pay_fen,
        'postings', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                         'account', p.account, 'amount_fen', p.amount_fen) ORDER BY p.posting_id),
                         '[]'::jsonb)
                     FROM postings p WHERE p.entry_id = s.entry_id))
    FROM settlements s WHERE s.setl_id = p_setl_id
$$;

-- The locks a cancellation takes, in 2207's order; the person and accumulators are the
-- settlement's own (a request naming another person is refused after the load).
CREATE FUNCTION yk_lock_for_cancel(p_setl_id text, p_mdtrt_id text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s_psn_no text;
    s_year integer;
BEGIN
    PERFORM 1 FROM visits WHERE mdtrt_id = p_mdtrt_id FOR UPDATE;
    SELECT psn_no, year INTO s_psn_no, s_year FROM settlements
    WHERE setl_id = p_setl_id FOR UPDATE;
    IF FOUND THEN
        PERFORM 1 FROM persons WHERE psn_no = s_psn_no FOR UPDATE;
        PERFORM 1 FROM person_accumulators WHERE psn_no = s_psn_no AND year = s_year FOR UPDATE;
    END IF;
END $$;

-- What decide_cancel reads (CancelLoad), once the locks are held.
CREATE FUNCTION yk_cancel_json(p_setl_id text, p_mdtrt_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'visit', yk_visit_json(p_mdtrt_id),
        'settlement', yk_settlement_json(p_setl_id),
        'person', (SELECT yk_person_json(psn_no) FROM settlements WHERE setl_id = p_setl_id),
        'accumulators', (SELECT jsonb_build_object('year', a.year,
                             'deductible_used_fen', a.deductible_used_fen,
                             'outpatient_fund_paid_fen', a.outpatient_fund_paid_fen,
                             'fund_paid_fen', a.fund_paid_fen)
                         FROM settlements s JOIN person_accumulators a
                           ON a.psn_no = s.psn_no AND a.year = s.year
                         WHERE s.setl_id = p_setl_id))
$$;

-- 2208: the settlement named by setl_id, with its stored answer (the cancellation
-- answers with it negated).
CREATE FUNCTION yk_load_settlement_cancel(facts jsonb, p_setl_id text, p_mdtrt_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    PERFORM yk_lock_for_cancel(p_setl_id, p_mdtrt_id);
    facts := yk_relocked(facts);
    IF facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'cancel', yk_cancel_json(p_setl_id, p_mdtrt_id),
        'answer', (SELECT answer FROM settlements WHERE setl_id = p_setl_id)));
END $$;

-- 2601: the original's idempotency record (locked: two reversals of one msgid queue
-- here) and, when it produced a settlement, that settlement locked as 2208 would. An
-- original not found is not locked by anything: the write's tombstone insert then waits
-- on the key for an original in flight, and fails on it if the original commits.
CREATE FUNCTION yk_load_reversal(facts jsonb, p_fixmedins_code text, p_omsgid text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    original jsonb;
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
        RETURN facts || jsonb_build_object('flow', jsonb_build_object(
            'original', NULL, 'cancel', NULL));
    END IF;
    SELECT setl_id, mdtrt_id INTO s_setl_id, s_mdtrt_id FROM settlements
    WHERE fixmedins_code = p_fixmedins_code AND msgid = p_omsgid;
    IF s_setl_id IS NULL THEN
        RETURN facts || jsonb_build_object('flow', jsonb_build_object(
            'original', original, 'cancel', NULL));
    END IF;
    PERFORM yk_lock_for_cancel(s_setl_id, s_mdtrt_id);
    facts := yk_relocked(facts);
    IF facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'original', original, 'cancel', yk_cancel_json(s_setl_id, s_mdtrt_id)));
END $$;

-- A decided cancellation: the negating entry, the settlement settled → cancelled (the
-- WHERE on the state it was decided from), its details freed, the account refunded
-- (guarded by the balance the decision saw) and the accumulators put back.
CREATE FUNCTION yk_cancel_settlement(c jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    n integer;
BEGIN
    INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id, fixmedins_code, msgid)
    VALUES ('cancel', c->>'insuplc_admdvs', c->>'setl_id', c->>'fixmedins_code', c->>'msgid')
    RETURNING entry_id INTO entry;
    INSERT INTO postings (entry_id, account, amount_fen)
    SELECT entry, p.account, p.amount_fen
    FROM jsonb_to_recordset(c->'postings') AS p(account text, amount_fen bigint);
    UPDATE settlements SET state = c->>'state', cancel_entry_id = entry,
        cancel_msgid = c->>'msgid', cancelled_at = (c->>'cancelled_at')::timestamptz
    WHERE setl_id = c->>'setl_id' AND state = c->>'state_before';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'cancellation of %: the settlement changed under its lock',
            c->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    UPDATE fee_details SET setl_id = NULL WHERE setl_id = c->>'setl_id';
    UPDATE persons SET acct_balance_fen = (c->>'balance_after_fen')::bigint
    WHERE psn_no = c->>'psn_no' AND acct_balance_fen = (c->>'balance_before_fen')::bigint;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'cancellation of %: the personal account changed under its lock',
            c->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    UPDATE person_accumulators SET
        deductible_used_fen = (c->'accumulators'->>'deductible_used_fen')::bigint,
        outpatient_fund_paid_fen = (c->'accumulators'->>'outpatient_fund_paid_fen')::bigint,
        fund_paid_fen = (c->'accumulators'->>'fund_paid_fen')::bigint
    WHERE psn_no = c->>'psn_no' AND year = (c->'accumulators'->>'year')::integer;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'cancellation of %: no accumulators for its year', c->>'setl_id'
            USING ERRCODE = 'internal_error';
    END IF;
END $$;

CREATE FUNCTION yk_write_settlement_cancel(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    PERFORM yk_cancel_settlement(doc->'cancel');
END $$;

-- 2601: the tombstone (a conflict on tx_log_pkey means the original committed after
-- the load: the engine loads again), the cancellation, the original marked reversed.
CREATE FUNCTION yk_write_reversal(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
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
    IF doc->'cancel' <> 'null'::jsonb THEN
        PERFORM yk_cancel_settlement(doc->'cancel');
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
