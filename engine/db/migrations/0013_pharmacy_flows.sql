-- Pharmacy purchases on the transaction core (settlement/pharmacy.py): 2101 pre-settle
-- and 2102 settle carry the basket in the request, so one load finds the person, the
-- year's accumulators (locked, in the core's order, for 2102), the basket's catalog
-- entries and the card proof, and one write stores the whole purchase. 2103 cancels
-- with the functions of 2208 (migration 0009).

-- The catalog entries of `p_codes`, as the decisions split lines against them.
CREATE FUNCTION yk_catalog_json(p_codes text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'med_list_codg', med_list_codg, 'name', name, 'list_type', list_type,
        'chrgitm_lv', chrgitm_lv, 'price_ceiling_fen_per_unit', price_ceiling_fen_per_unit,
        'selfpay_prop_bp', selfpay_prop_bp)), '[]'::jsonb)
    FROM catalog_items WHERE med_list_codg = ANY(p_codes)
$$;

CREATE FUNCTION yk_load_pharmacy_settle(
    facts jsonb, p_psn_no text, p_year integer, p_codes text[], p_lock boolean,
    p_insuplc_admdvs text, p_cred_ref text
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
        'setl_seq', CASE WHEN p_lock THEN nextval('setl_id_seq') END));
END $$;

-- 2102: the purchase and its lines, then the settlement exactly as 2207 writes it (the
-- msgid claim, the journal entry and postings, the settlement, the lines marked
-- settled, the account and the accumulators).
CREATE FUNCTION yk_write_pharmacy_settle(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := doc->'visit';
BEGIN
    INSERT INTO visits (mdtrt_id, psn_no, insuplc_admdvs, mdtrtarea_admvs, fixmedins_code,
        insutype, med_type, ipt_otp_no, mdtrt_cert_type, begntime, registration, state)
    VALUES (v->>'mdtrt_id', v->>'psn_no', v->>'insuplc_admdvs', v->>'mdtrtarea_admvs',
        v->>'fixmedins_code', v->>'insutype', v->>'med_type', v->>'ipt_otp_no',
        v->>'mdtrt_cert_type', (v->>'begntime')::timestamp, v->'registration', v->>'state');
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
    PERFORM yk_write_outpatient_settle(doc);
END $$;
