-- The treating region's catalog decides what is in scope (就医地目录, DOMAIN.md §4.7): the
-- province's catalog, with the price ceilings a region sets for itself. A line is split
-- against the ceiling of the region where it was treated — also for a patient insured
-- elsewhere, whose own region's policy then decides what is paid.

CREATE TABLE catalog_region_prices (
    admdvs                      text NOT NULL CHECK (admdvs ~ '^[0-9]{6}$'),
    med_list_codg               text NOT NULL REFERENCES catalog_items (med_list_codg),
    price_ceiling_fen_per_unit  bigint NOT NULL CHECK (price_ceiling_fen_per_unit >= 0),
    PRIMARY KEY (admdvs, med_list_codg)
);

-- The catalog entries of `p_codes` as region `p_admdvs` prices them.
CREATE FUNCTION yk_catalog_json(p_codes text[], p_admdvs text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'med_list_codg', c.med_list_codg, 'name', c.name, 'list_type', c.list_type,
        'chrgitm_lv', c.chrgitm_lv,
        'price_ceiling_fen_per_unit',
            coalesce(r.price_ceiling_fen_per_unit, c.price_ceiling_fen_per_unit),
        'selfpay_prop_bp', c.selfpay_prop_bp)), '[]'::jsonb)
    FROM catalog_items c
    LEFT JOIN catalog_region_prices r ON r.admdvs = p_admdvs AND r.med_list_codg = c.med_list_codg
    WHERE c.med_list_codg = ANY(p_codes)
$$;

-- 2204 fee details, as in 0007, with the lines priced by the visit's treating region.
CREATE OR REPLACE FUNCTION yk_load_outpatient_fees(
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
        'catalog', yk_catalog_json(
            p_codes, (SELECT mdtrtarea_admvs FROM visits WHERE mdtrt_id = p_mdtrt_id))));
END $$;

-- 2101 / 2102, as in 0014, with the basket priced by the treating region.
CREATE OR REPLACE FUNCTION yk_load_pharmacy_settle(
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
        'catalog', yk_catalog_json(p_codes, p_mdtrtarea_admvs),
        'proof', CASE WHEN p_cred_ref <> ''
                      THEN yk_card_proof_json(p_insuplc_admdvs, p_cred_ref) END,
        'visit_seq', CASE WHEN p_lock THEN nextval('mdtrt_id_seq') END,
        'setl_seq', CASE WHEN p_lock THEN nextval('setl_id_seq') END,
        'filing', yk_filing(p_insuplc_admdvs, p_psn_no, p_mdtrtarea_admvs, p_day)));
END $$;

-- The one-argument catalog function of 0013 has no caller left.
DROP FUNCTION yk_catalog_json(text[]);
