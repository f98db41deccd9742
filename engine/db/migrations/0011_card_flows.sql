-- 9301 card challenge and 1101 person info on the transaction core: one load and one
-- write each (settlement/cards.py decides between them, after the HSM's verdict).
-- Neither claims a msgid: a challenge or an e-card token is single use by itself, and a
-- repeated 9301 simply gets a fresh challenge. Timestamps are the engine's clock,
-- carried in the write's document (never SQL now()).

CREATE FUNCTION yk_card_json(p_card_sn text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'card_sn', card_sn, 'card_no', card_no, 'psn_no', psn_no, 'generation', generation,
        'status', status, 'expiry_date', expiry_date)
    FROM cards WHERE card_sn = p_card_sn
$$;

-- A person as 1101 answers them.
CREATE FUNCTION yk_insured_json(p_psn_no text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'psn_no', psn_no, 'insuplc_admdvs', insuplc_admdvs, 'psn_cert_type', psn_cert_type,
        'certno', certno, 'psn_name', psn_name, 'gend', gend, 'naty', naty, 'brdy', brdy,
        'insutype', insutype, 'retired', retired, 'psn_insu_stas', psn_insu_stas,
        'psn_insu_date', psn_insu_date, 'cvlserv_flag', cvlserv_flag, 'emp_name', emp_name,
        'acct_balance_fen', acct_balance_fen)
    FROM persons WHERE psn_no = p_psn_no
$$;

-- 9301: the card the challenge is asked for.
CREATE FUNCTION yk_load_card_challenge(facts jsonb, p_card_sn text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'card', yk_card_json(p_card_sn)));
END $$;

-- 9301: the challenge, bound to the terminal and the card. A collision with a stored
-- challenge (8 random bytes from the HSM) is a serialization failure: the engine runs
-- the request again, and the HSM draws again.
CREATE FUNCTION yk_write_card_challenge(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := doc->'challenge';
BEGIN
    INSERT INTO card_challenges (challenge, terminal_id, card_sn, created_at, expires_at)
    VALUES (decode(c->>'challenge', 'hex'), c->>'terminal_id', c->>'card_sn',
            (c->>'created_at')::timestamptz, (c->>'expires_at')::timestamptz)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the HSM drew a challenge that is stored already'
            USING ERRCODE = 'serialization_failure';
    END IF;
END $$;

-- 1101: the person by certno (ID number, or the e-card token's), or by card: the card,
-- its holder and the presented challenge's row, locked, so that two requests presenting
-- one challenge go one at a time and the second sees it spent; and whether the e-card
-- token id was spent before.
CREATE FUNCTION yk_load_person_info(
    facts jsonb, p_certno text, p_card_sn text, p_challenge text, p_token_id text
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_card jsonb;
    v_challenge jsonb;
    v_psn_no text;
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    IF p_card_sn <> '' THEN
        SELECT jsonb_build_object('terminal_id', terminal_id, 'card_sn', card_sn,
            'created_at', created_at, 'expires_at', expires_at, 'used', used_at IS NOT NULL)
        INTO v_challenge
        FROM card_challenges WHERE challenge = decode(p_challenge, 'hex') FOR UPDATE;
        v_card := yk_card_json(p_card_sn);
        v_psn_no := v_card->>'psn_no';
    ELSIF p_certno <> '' THEN
        SELECT psn_no INTO v_psn_no FROM persons WHERE certno = p_certno;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'person', yk_insured_json(v_psn_no),
        'card', v_card,
        'challenge', v_challenge,
        'token_used', p_token_id <> '' AND EXISTS (
            SELECT 1 FROM ecard_tokens_used WHERE token_id = p_token_id)));
END $$;

-- 1101: what the decision spent — the challenge (locked by the load, so still unused)
-- or the e-card token id. A token id that a concurrent request spent between our load
-- and this write is a serialization failure: the engine runs the request again, and
-- the load then finds the id spent.
CREATE FUNCTION yk_write_person_info(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := doc->'challenge_burn';
    t jsonb := doc->'token_burn';
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
END $$;
