-- 9001 sign-in and 9002 sign-out on the transaction core: one load and one write each,
-- the write also claiming the msgid and storing the answer. The timestamps are the
-- engine's clock, carried in the write's document (never SQL now()); the sign_no is
-- built by the engine from that clock and the sequence value the load draws.

-- 9001: whether the envelope's operator is registered at its institution, and the next
-- sign-in number.
CREATE FUNCTION yk_load_session_sign_in(facts jsonb, p_opter text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'operator_known', EXISTS (SELECT 1 FROM operators
                                  WHERE fixmedins_code = facts->>'fixmedins_code'
                                  AND opter = p_opter),
        'sign_no_seq', nextval('sign_no_seq')));
END $$;

CREATE FUNCTION yk_write_session_sign_in(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := doc->'sign_in';
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    INSERT INTO sign_ins (sign_no, fixmedins_code, opter, terminal_id, signed_in_at)
    VALUES (s->>'sign_no', s->>'fixmedins_code', s->>'opter', s->>'terminal_id',
            (s->>'signed_in_at')::timestamptz);
END $$;

-- 9002: the envelope's sign-in, locked (two sign-outs of one sign_no go one at a time)
-- and read again under the lock, after the msgid's record (yk_relocked).
CREATE FUNCTION yk_load_session_sign_out(facts jsonb, p_sign_no text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (facts->>'nonce_fresh')::boolean OR facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    PERFORM 1 FROM sign_ins
    WHERE sign_no = p_sign_no AND fixmedins_code = facts->>'fixmedins_code' FOR UPDATE;
    facts := yk_relocked(facts);
    IF facts->'tx' <> 'null'::jsonb THEN
        RETURN facts;
    END IF;
    RETURN facts || jsonb_build_object('flow', jsonb_build_object(
        'sign_in', (SELECT jsonb_build_object('opter', opter,
                                              'signed_out', signed_out_at IS NOT NULL)
                    FROM sign_ins
                    WHERE sign_no = p_sign_no AND fixmedins_code = facts->>'fixmedins_code')));
END $$;

CREATE FUNCTION yk_write_session_sign_out(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM yk_claim_msgid(doc->'tx');
    UPDATE sign_ins SET signed_out_at = (doc->>'signed_out_at')::timestamptz
    WHERE sign_no = doc->>'sign_no' AND fixmedins_code = doc->>'fixmedins_code'
      AND signed_out_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'sign-out %: the sign-in was not open under its lock', doc->>'sign_no'
            USING ERRCODE = 'internal_error';
    END IF;
END $$;
