-- Card proof bound to the money (DESIGN.md §4, settlement/proofs.py): a 1101 by card or
-- e-card that succeeded writes a credential reference for (person, terminal,
-- institution); a 2201 or 2207 by card or e-card must present it, and its load reads it
-- back. Keyed with the insured region first, like every per-person row should be for the
-- scale-out of DESIGN.md §7: the 2201 / 2207 envelope names that region.

CREATE TABLE card_proofs (
    insuplc_admdvs  text NOT NULL CHECK (insuplc_admdvs ~ '^[0-9]{6}$'),
    cred_ref        text NOT NULL CHECK (cred_ref ~ '^[0-9a-f]{32}$'),
    credential      text NOT NULL CHECK (credential IN ('01', '03')),
    psn_no          text NOT NULL REFERENCES persons (psn_no),
    terminal_id     text NOT NULL REFERENCES terminals (terminal_id),
    fixmedins_code  text NOT NULL REFERENCES institutions (fixmedins_code),
    card_sn         text REFERENCES cards (card_sn),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (insuplc_admdvs, cred_ref),
    CHECK (expires_at > created_at),
    CHECK ((credential = '03') = (card_sn IS NOT NULL))
);
CREATE INDEX card_proofs_expiry ON card_proofs (expires_at);

-- A reference as a money transaction's load sees it: revoked when the card it was
-- issued for is no longer active (an e-card reference lives until it expires).
CREATE FUNCTION yk_card_proof_json(p_insuplc_admdvs text, p_cred_ref text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'cred_ref', p.cred_ref, 'credential', p.credential, 'psn_no', p.psn_no,
        'terminal_id', p.terminal_id, 'fixmedins_code', p.fixmedins_code,
        'expires_at', p.expires_at, 'revoked', coalesce(c.status <> 'active', false))
    FROM card_proofs p LEFT JOIN cards c ON c.card_sn = p.card_sn
    WHERE p.insuplc_admdvs = p_insuplc_admdvs AND p.cred_ref = p_cred_ref
$$;

-- 1101: what the decision spent, as before, and the reference it issued.
CREATE OR REPLACE FUNCTION yk_write_person_info(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := doc->'challenge_burn';
    t jsonb := doc->'token_burn';
    p jsonb := doc->'card_proof';
BEGIN
    IF jsonb_typeof(c) = 'object' THEN
        UPDATE card_challenges SET used_at = (c->>'used_at')::timestamptz
        WHERE challenge = decode(c->>'challenge', 'hex') AND used_at IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a challenge was spent under the lock of the request spending it'
                USING ERRCODE = 'internal_error';
        END IF;
    END IF;
    IF jsonb_typeof(t) = 'object' THEN
        INSERT INTO ecard_tokens_used (token_id, used_at, expires_at)
        VALUES (t->>'token_id', (t->>'used_at')::timestamptz, (t->>'expires_at')::timestamptz)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an e-card token id was spent by a concurrent request'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    IF jsonb_typeof(p) = 'object' THEN
        -- A collision of 16 random bytes is a serialization failure: the engine runs the
        -- request again and draws again.
        INSERT INTO card_proofs (insuplc_admdvs, cred_ref, credential, psn_no, terminal_id,
            fixmedins_code, card_sn, created_at, expires_at)
        VALUES (p->>'insuplc_admdvs', p->>'cred_ref', p->>'credential', p->>'psn_no',
            p->>'terminal_id', p->>'fixmedins_code', p->>'card_sn',
            (p->>'created_at')::timestamptz, (p->>'expires_at')::timestamptz)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the engine drew a cred_ref that is stored already'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
END $$;

-- 2201 register, as in 0007, plus the presented reference.
DROP FUNCTION yk_load_outpatient_register(jsonb, text, text, text);
CREATE FUNCTION yk_load_outpatient_register(
    facts jsonb, p_fixmedins_code text, p_psn_no text, p_ipt_otp_no text,
    p_insuplc_admdvs text, p_cred_ref text
) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'person', yk_person_json(p_psn_no),
        'number_taken', EXISTS (SELECT 1 FROM visits WHERE fixmedins_code = p_fixmedins_code
                                AND ipt_otp_no = p_ipt_otp_no AND state = 'registered'),
        'visit_seq', nextval('mdtrt_id_seq'),
        'proof', CASE WHEN p_cred_ref <> ''
                      THEN yk_card_proof_json(p_insuplc_admdvs, p_cred_ref) END));
END $$;

-- 2206 pre-settle and 2207 settle, as in 0007, plus the presented reference (2207).
DROP FUNCTION yk_load_outpatient_settle(jsonb, text, text, integer, text, boolean);
CREATE FUNCTION yk_load_outpatient_settle(
    facts jsonb, p_mdtrt_id text, p_psn_no text, p_year integer, p_chrg_bchno text,
    p_lock boolean, p_insuplc_admdvs text, p_cred_ref text
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
        'setl_seq', CASE WHEN p_lock THEN nextval('setl_id_seq') END,
        'proof', CASE WHEN p_cred_ref <> ''
                      THEN yk_card_proof_json(p_insuplc_admdvs, p_cred_ref) END));
END $$;
