-- Cross-region direct settlement (异地就医, DOMAIN.md §4.7, §5.4): a person's filings for
-- treating regions, read by the settlement loads when the treating region is not the
-- insured one. The settlement is written under the insured region (DESIGN.md §7); the
-- treating region is reached through the clearing accounts of its postings
-- (settlement/ledger.py), checked by `yikatong ledger check`.

-- The clearing accounts of a region pair (settlement/ledger.py): xdue:<insured>:<treating>
-- in the insured region's books, xrecv:<treating>:<insured> in the treating region's.
ALTER TABLE postings DROP CONSTRAINT postings_account_check;
ALTER TABLE postings ADD CONSTRAINT postings_account_check
    CHECK (account ~ '^(fund|acct|recv|cash|oop|contrib|xdue|xrecv):[A-Za-z0-9:]+$');

-- 备案: filed (long-term residence or work there) or referred (转诊) to a treating
-- region, from a day, until a day or open. No row valid on the day: unfiled.
CREATE TABLE cross_region_filings (
    insuplc_admdvs   text NOT NULL CHECK (insuplc_admdvs ~ '^[0-9]{6}$'),
    psn_no           text NOT NULL REFERENCES persons (psn_no),
    mdtrtarea_admvs  text NOT NULL CHECK (mdtrtarea_admvs ~ '^[0-9]{6}$'),
    kind             text NOT NULL CHECK (kind IN ('filed', 'referral')),
    begndate         date NOT NULL,
    enddate          date,
    PRIMARY KEY (insuplc_admdvs, psn_no, mdtrtarea_admvs, begndate),
    CHECK (enddate IS NULL OR enddate >= begndate),
    CHECK (mdtrtarea_admvs <> insuplc_admdvs)
);

-- The person's filing status for the treating region on a day: 'filed' before
-- 'referral' when both are valid (the more generous factor is what the person holds),
-- NULL for a local settlement, 'unfiled' when no filing is valid.
CREATE FUNCTION yk_filing(
    p_insuplc_admdvs text, p_psn_no text, p_mdtrtarea_admvs text, p_day date
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_insuplc_admdvs = p_mdtrtarea_admvs THEN NULL ELSE coalesce((
        SELECT kind FROM cross_region_filings
        WHERE insuplc_admdvs = p_insuplc_admdvs AND psn_no = p_psn_no
          AND mdtrtarea_admvs = p_mdtrtarea_admvs
          AND begndate <= p_day AND (enddate IS NULL OR enddate >= p_day)
        ORDER BY kind = 'filed' DESC LIMIT 1), 'unfiled') END
$$;

-- 2206 / 2207, as in 0012, plus the filing for the treating region.
DROP FUNCTION yk_load_outpatient_settle(
    jsonb, text, text, integer, text, boolean, text, text);
CREATE FUNCTION yk_load_outpatient_settle(
    facts jsonb, p_mdtrt_id text, p_psn_no text, p_year integer, p_chrg_bchno text,
    p_lock boolean, p_insuplc_admdvs text, p_cred_ref text, p_mdtrtarea_admvs text,
    p_day date
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
                      THEN yk_card_proof_json(p_insuplc_admdvs, p_cred_ref) END,
        'filing', yk_filing(p_insuplc_admdvs, p_psn_no, p_mdtrtarea_admvs, p_day)));
END $$;

-- 2101 / 2102, as in 0013, plus the filing for the treating region.
DROP FUNCTION yk_load_pharmacy_settle(jsonb, text, integer, text[], boolean, text, text);
CREATE FUNCTION yk_load_pharmacy_settle(
    facts jsonb, p_psn_no text, p_year integer, p_codes text[], p_lock boolean,
    p_insuplc_admdvs text, p_cred_ref text, p_mdtrtarea_admvs text, p_day date
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    acc jsonb;
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    IF p_lock THEN
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
        'person', yk_person_json(p_psn_no),
        'accumulators', acc,
        'catalog', yk_catalog_json(p_codes),
        'proof', CASE WHEN p_cred_ref <> ''
                      THEN yk_card_proof_json(p_insuplc_admdvs, p_cred_ref) END,
        'visit_seq', CASE WHEN p_lock THEN nextval('mdtrt_id_seq') END,
        'setl_seq', CASE WHEN p_lock THEN nextval('setl_id_seq') END,
        'filing', yk_filing(p_insuplc_admdvs, p_psn_no, p_mdtrtarea_admvs, p_day)));
END $$;
