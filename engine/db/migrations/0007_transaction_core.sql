-- The transaction core (DESIGN.md §2): every state-changing request is BEGIN, one
-- locking load, and one write that claims the msgid and stores the answer, followed by
-- COMMIT in the same round trip. The functions here are that load and that write; the
-- decisions between them are made in Python (settlement/), never in SQL.
--
-- Lock order, kept by every load: visit → person → accumulators.

-- Replay protection shared by every engine process and surviving a restart: a nonce is
-- claimed once per terminal while its timestamp is inside the clock-skew window.
CREATE TABLE request_nonces (
    terminal_id  text NOT NULL,
    nonce        text NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (terminal_id, nonce)
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);

-- Idempotency keys on what the request asks, not on its envelope: SHA-256 over infno
-- and the `input` bytes, so a retry with a refreshed inf_time gets the stored answer.
ALTER TABLE tx_log RENAME COLUMN body_sha256 TO request_sha256;

CREATE FUNCTION yk_tx_json(p_fixmedins_code text, p_msgid text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'infno', infno,
        'request_sha256', encode(request_sha256, 'hex'),
        'answer', convert_from(answer, 'UTF8'),
        'tombstone', tombstone,
        'reversed_by_msgid', reversed_by_msgid)
    FROM tx_log WHERE fixmedins_code = p_fixmedins_code AND msgid = p_msgid
$$;

-- What every request's load starts with: the nonce claimed (false: a replay), the
-- sign-in named by sign_no at this institution, and the idempotency record of the
-- msgid. A claimed nonce is the only change a load makes.
CREATE FUNCTION yk_request_facts(
    p_terminal_id text, p_nonce text, p_nonce_expires timestamptz,
    p_fixmedins_code text, p_msgid text, p_sign_no text
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    fresh boolean;
    session jsonb;
    tx jsonb;
BEGIN
    INSERT INTO request_nonces (terminal_id, nonce, expires_at)
    VALUES (p_terminal_id, p_nonce, p_nonce_expires)
    ON CONFLICT DO NOTHING RETURNING true INTO fresh;
    IF fresh IS NULL THEN
        RETURN jsonb_build_object('nonce_fresh', false);
    END IF;
    IF p_sign_no <> '' THEN
        SELECT jsonb_build_object('opter', opter, 'signed_out', signed_out_at IS NOT NULL)
        INTO session
        FROM sign_ins WHERE sign_no = p_sign_no AND fixmedins_code = p_fixmedins_code;
    END IF;
    IF p_msgid <> '' THEN
        tx := yk_tx_json(p_fixmedins_code, p_msgid);
    END IF;
    RETURN jsonb_build_object('nonce_fresh', true, 'session', session, 'tx', tx,
                              'fixmedins_code', p_fixmedins_code, 'msgid', p_msgid);
END $$;

-- After a load has taken its row locks it reads the msgid's record again: an identical
-- request that held those locks may have committed meanwhile, and its stored answer is
-- then the answer (rather than "already settled").
CREATE FUNCTION yk_relocked(facts jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    tx jsonb;
BEGIN
    IF facts->>'msgid' = '' THEN
        RETURN facts;
    END IF;
    tx := yk_tx_json(facts->>'fixmedins_code', facts->>'msgid');
    IF tx IS NULL THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('tx', tx);
END $$;

-- The idempotency claim and the stored answer, as part of a transaction's write. A
-- concurrent request with the same msgid that committed first makes this raise
-- unique_violation on tx_log_pkey: the engine then loads again and answers from it.
CREATE FUNCTION yk_claim_msgid(tx jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tx_log (fixmedins_code, msgid, infno, request_sha256, answer)
    VALUES (tx->>'fixmedins_code', tx->>'msgid', tx->>'infno',
            decode(tx->>'request_sha256', 'hex'), convert_to(tx->>'answer', 'UTF8'))
$$;

-- A person as the outpatient flows need them (identity for the answer, insurance,
-- account balance).
CREATE FUNCTION yk_person_json(p_psn_no text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'psn_no', psn_no, 'insuplc_admdvs', insuplc_admdvs, 'psn_cert_type', psn_cert_type,
        'certno', certno, 'psn_name', psn_name, 'gend', gend, 'naty', naty, 'brdy', brdy,
        'insutype', insutype, 'retired', retired, 'psn_insu_stas', psn_insu_stas,
        'cvlserv_flag', cvlserv_flag, 'acct_balance_fen', acct_balance_fen)
    FROM persons WHERE psn_no = p_psn_no
$$;

CREATE FUNCTION yk_visit_json(p_mdtrt_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'mdtrt_id', mdtrt_id, 'psn_no', psn_no, 'fixmedins_code', fixmedins_code,
        'insutype', insutype, 'mdtrt_cert_type', mdtrt_cert_type, 'state', state)
    FROM visits WHERE mdtrt_id = p_mdtrt_id
$$;

-- 2201 register: the person, whether the outpatient number already has an open visit
-- here, and the next visit number.
CREATE FUNCTION yk_load_outpatient_register(
    facts jsonb, p_fixmedins_code text, p_psn_no text, p_ipt_otp_no text
) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'person', yk_person_json(p_psn_no),
        'number_taken', EXISTS (SELECT 1 FROM visits WHERE fixmedins_code = p_fixmedins_code
                                AND ipt_otp_no = p_ipt_otp_no AND state = 'registered'),
        'visit_seq', nextval('mdtrt_id_seq')));
END $$;

CREATE FUNCTION yk_write_outpatient_register(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := doc->'visit';
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    INSERT INTO visits (mdtrt_id, psn_no, insuplc_admdvs, mdtrtarea_admvs, fixmedins_code,
        insutype, ipt_otp_no, mdtrt_cert_type, begntime, registration, state)
    VALUES (v->>'mdtrt_id', v->>'psn_no', v->>'insuplc_admdvs', v->>'mdtrtarea_admvs',
        v->>'fixmedins_code', v->>'insutype', v->>'ipt_otp_no', v->>'mdtrt_cert_type',
        (v->>'begntime')::timestamp, v->'registration', v->>'state');
END $$;

-- 2204 fee details: the visit (locked: details of one visit are written one upload at a
-- time), which of the uploaded serial numbers exist already, and the catalog entries.
CREATE FUNCTION yk_load_outpatient_fees(
    facts jsonb, p_mdtrt_id text, p_feedetl_sns text[], p_codes text[]
) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    PERFORM 1 FROM visits WHERE mdtrt_id = p_mdtrt_id FOR UPDATE;
    facts := yk_relocked(facts);
    IF facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'visit', yk_visit_json(p_mdtrt_id),
        'taken', (SELECT coalesce(jsonb_agg(feedetl_sn ORDER BY feedetl_sn), '[]'::jsonb)
                  FROM fee_details WHERE mdtrt_id = p_mdtrt_id AND feedetl_sn = ANY(p_feedetl_sns)),
        'catalog', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'med_list_codg', med_list_codg, 'name', name, 'list_type', list_type,
                        'chrgitm_lv', chrgitm_lv,
                        'price_ceiling_fen_per_unit', price_ceiling_fen_per_unit,
                        'selfpay_prop_bp', selfpay_prop_bp)), '[]'::jsonb)
                    FROM catalog_items WHERE med_list_codg = ANY(p_codes))));
END $$;

CREATE FUNCTION yk_write_outpatient_fees(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    INSERT INTO fee_details (mdtrt_id, feedetl_sn, chrg_bchno, med_list_codg, medins_list_codg,
        cnt, pric, fee_ocur_time, det_item_fee_sumamt_fen, fulamt_ownpay_amt_fen,
        overlmt_amt_fen, preselfpay_amt_fen, inscp_scp_amt_fen, pric_uplmt_amt_fen,
        selfpay_prop_bp, chrgitm_lv, memo, detail)
    SELECT d.mdtrt_id, d.feedetl_sn, d.chrg_bchno, d.med_list_codg, d.medins_list_codg,
        d.cnt, d.pric, d.fee_ocur_time, d.det_item_fee_sumamt_fen, d.fulamt_ownpay_amt_fen,
        d.overlmt_amt_fen, d.preselfpay_amt_fen, d.inscp_scp_amt_fen, d.pric_uplmt_amt_fen,
        d.selfpay_prop_bp, d.chrgitm_lv, d.memo, d.detail
    FROM jsonb_to_recordset(doc->'details') AS d(
        mdtrt_id text, feedetl_sn text, chrg_bchno text, med_list_codg text,
        medins_list_codg text, cnt numeric, pric numeric, fee_ocur_time timestamp,
        det_item_fee_sumamt_fen bigint, fulamt_ownpay_amt_fen bigint, overlmt_amt_fen bigint,
        preselfpay_amt_fen bigint, inscp_scp_amt_fen bigint, pric_uplmt_amt_fen bigint,
        selfpay_prop_bp integer, chrgitm_lv text, memo text, detail jsonb);
END $$;

-- 2206 pre-settle and 2207 settle: the visit, the person, the year's accumulators (in
-- that lock order when p_lock), the visit's live settlement, its unsettled details and,
-- for 2207, the next settlement number.
CREATE FUNCTION yk_load_outpatient_settle(
    facts jsonb, p_mdtrt_id text, p_psn_no text, p_year integer, p_chrg_bchno text,
    p_lock boolean
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    acc jsonb;
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    IF p_lock THEN
        PERFORM 1 FROM visits WHERE mdtrt_id = p_mdtrt_id FOR UPDATE;
        PERFORM 1 FROM persons WHERE psn_no = p_psn_no FOR UPDATE;
        PERFORM 1 FROM person_accumulators WHERE psn_no = p_psn_no AND year = p_year FOR UPDATE;
        facts := yk_relocked(facts);
        IF facts->'tx' <> 'null'::jsonb THEN
            RETURN facts;
        END IF;
    END IF;
    SELECT jsonb_build_object('year', year, 'deductible_used_fen', deductible_used_fen,
        'outpatient_fund_paid_fen', outpatient_fund_paid_fen, 'fund_paid_fen', fund_paid_fen)
    INTO acc FROM person_accumulators WHERE psn_no = p_psn_no AND year = p_year;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'visit', yk_visit_json(p_mdtrt_id),
        'person', yk_person_json(p_psn_no),
        'accumulators', acc,
        'live_setl_id', (SELECT setl_id FROM settlements
                         WHERE mdtrt_id = p_mdtrt_id AND state = 'settled'),
        'details', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'feedetl_sn', feedetl_sn,
                        'det_item_fee_sumamt_fen', det_item_fee_sumamt_fen,
                        'fulamt_ownpay_amt_fen', fulamt_ownpay_amt_fen,
                        'overlmt_amt_fen', overlmt_amt_fen,
                        'preselfpay_amt_fen', preselfpay_amt_fen,
                        'inscp_scp_amt_fen', inscp_scp_amt_fen,
                        'pric_uplmt_amt_fen', pric_uplmt_amt_fen,
                        'selfpay_prop_bp', selfpay_prop_bp,
                        'chrgitm_lv', chrgitm_lv, 'memo', memo) ORDER BY feedetl_sn), '[]'::jsonb)
                    FROM fee_details WHERE mdtrt_id = p_mdtrt_id AND setl_id IS NULL
                    AND (p_chrg_bchno = '' OR chrg_bchno = p_chrg_bchno)),
        'setl_seq', CASE WHEN p_lock THEN nextval('setl_id_seq') END));
END $$;

-- 2207: the journal entry and its postings, the settlement, the details marked settled,
-- the account balance (guarded by the balance the decision saw) and the accumulators
-- (opened with their limits if this is the year's first settlement).
CREATE FUNCTION yk_write_outpatient_settle(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := doc->'settlement';
    a jsonb := doc->'accumulators';
    entry bigint;
    n integer;
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id, fixmedins_code, msgid)
    VALUES ('settle', s->>'insuplc_admdvs', s->>'setl_id', s->>'fixmedins_code', s->>'msgid')
    RETURNING entry_id INTO entry;
    INSERT INTO postings (entry_id, account, amount_fen)
    SELECT entry, p.account, p.amount_fen
    FROM jsonb_to_recordset(doc->'postings') AS p(account text, amount_fen bigint);
    INSERT INTO settlements (setl_id, mdtrt_id, psn_no, insuplc_admdvs, mdtrtarea_admvs,
        fixmedins_code, insutype, med_type, year, msgid, state, setl_time,
        medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, preselfpay_amt_fen,
        inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen,
        psn_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, hosp_part_amt_fen,
        balc_before_fen, balc_fen, answer, entry_id)
    SELECT r.setl_id, r.mdtrt_id, r.psn_no, r.insuplc_admdvs, r.mdtrtarea_admvs,
        r.fixmedins_code, r.insutype, r.med_type, r.year, r.msgid, r.state, r.setl_time,
        r.medfee_sumamt_fen, r.fulamt_ownpay_amt_fen, r.overlmt_selfpay_fen,
        r.preselfpay_amt_fen, r.inscp_scp_amt_fen, r.act_pay_dedc_fen, r.hifp_pay_fen,
        r.fund_pay_sumamt_fen, r.psn_part_amt_fen, r.acct_pay_fen, r.psn_cash_pay_fen,
        r.hosp_part_amt_fen, r.balc_before_fen, r.balc_fen, doc->'answer_output', entry
    FROM jsonb_to_record(s) AS r(setl_id text, mdtrt_id text, psn_no text,
        insuplc_admdvs text, mdtrtarea_admvs text, fixmedins_code text, insutype text,
        med_type text, year integer, msgid text, state text, setl_time timestamptz,
        medfee_sumamt_fen bigint, fulamt_ownpay_amt_fen bigint, overlmt_selfpay_fen bigint,
        preselfpay_amt_fen bigint, inscp_scp_amt_fen bigint, act_pay_dedc_fen bigint,
        hifp_pay_fen bigint, fund_pay_sumamt_fen bigint, psn_part_amt_fen bigint,
        acct_pay_fen bigint, psn_cash_pay_fen bigint, hosp_part_amt_fen bigint,
        balc_before_fen bigint, balc_fen bigint);
    UPDATE fee_details SET setl_id = s->>'setl_id'
    WHERE mdtrt_id = s->>'mdtrt_id' AND setl_id IS NULL
      AND feedetl_sn IN (SELECT jsonb_array_elements_text(doc->'feedetl_sns'));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> jsonb_array_length(doc->'feedetl_sns') THEN
        RAISE EXCEPTION 'settlement %: % of % details were unsettled under the visit lock',
            s->>'setl_id', n, jsonb_array_length(doc->'feedetl_sns')
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE persons SET acct_balance_fen = (s->>'balc_fen')::bigint
    WHERE psn_no = s->>'psn_no' AND acct_balance_fen = (s->>'balc_before_fen')::bigint;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'settlement %: the personal account changed under its lock',
            s->>'setl_id' USING ERRCODE = 'internal_error';
    END IF;
    INSERT INTO person_accumulators AS pa (psn_no, year, insuplc_admdvs, deductible_fen,
        outpatient_limit_fen, annual_cap_fen, deductible_used_fen, outpatient_fund_paid_fen,
        fund_paid_fen)
    SELECT s->>'psn_no', (a->>'year')::integer, s->>'insuplc_admdvs',
        (a->>'deductible_fen')::bigint, (a->>'outpatient_limit_fen')::bigint,
        (a->>'annual_cap_fen')::bigint, (a->>'deductible_used_fen')::bigint,
        (a->>'outpatient_fund_paid_fen')::bigint, (a->>'fund_paid_fen')::bigint
    ON CONFLICT (psn_no, year) DO UPDATE
    SET deductible_used_fen = EXCLUDED.deductible_used_fen,
        outpatient_fund_paid_fen = EXCLUDED.outpatient_fund_paid_fen,
        fund_paid_fen = EXCLUDED.fund_paid_fen;
END $$;
