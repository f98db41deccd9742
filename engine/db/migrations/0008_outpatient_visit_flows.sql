-- 2202 unregister, 2203 visit info and 2205 cancel details on the transaction core:
-- one load (the visit locked, its live settlement, how many unsettled details a batch
-- has) and one write each, which also claims the msgid and stores the answer.

CREATE OR REPLACE FUNCTION yk_visit_json(p_mdtrt_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'mdtrt_id', mdtrt_id, 'psn_no', psn_no, 'fixmedins_code', fixmedins_code,
        'insutype', insutype, 'mdtrt_cert_type', mdtrt_cert_type, 'state', state,
        'ipt_otp_no', ipt_otp_no)
    FROM visits WHERE mdtrt_id = p_mdtrt_id
$$;

CREATE FUNCTION yk_load_outpatient_visit(
    facts jsonb, p_mdtrt_id text, p_chrg_bchno text, p_every_batch boolean
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
        'live_setl_id', (SELECT setl_id FROM settlements
                         WHERE mdtrt_id = p_mdtrt_id AND state = 'settled'),
        'unsettled_in_batch', (SELECT count(*) FROM fee_details
                               WHERE mdtrt_id = p_mdtrt_id AND setl_id IS NULL
                               AND (p_every_batch OR chrg_bchno = p_chrg_bchno))));
END $$;

CREATE FUNCTION yk_write_outpatient_visit_info(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    UPDATE visits SET med_type = doc->>'med_type', visit_info = doc->'visit_info'
    WHERE mdtrt_id = doc->>'mdtrt_id';
END $$;

CREATE FUNCTION yk_write_outpatient_fees_cancel(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    DELETE FROM fee_details
    WHERE mdtrt_id = doc->>'mdtrt_id' AND setl_id IS NULL
      AND ((doc->>'every_batch')::boolean OR chrg_bchno = doc->>'chrg_bchno');
END $$;

CREATE FUNCTION yk_write_outpatient_unregister(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    DELETE FROM fee_details WHERE mdtrt_id = doc->>'mdtrt_id' AND setl_id IS NULL;
    UPDATE visits SET state = doc->>'state', cancelled_at = (doc->>'cancelled_at')::timestamptz
    WHERE mdtrt_id = doc->>'mdtrt_id';
END $$;
