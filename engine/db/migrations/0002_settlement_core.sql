-- The outpatient settlement core: reference data (institutions, terminals, operators,
-- persons, catalog), visits and fee details, settlements, the double-entry ledger and
-- the idempotency log. Money is bigint fen everywhere. Every per-person and
-- per-settlement table carries the insured region (insuplc_admdvs) for scale-out.

CREATE TABLE institutions (
    fixmedins_code  text PRIMARY KEY CHECK (fixmedins_code ~ '^[A-Z0-9]{12}$'),
    fixmedins_name  text NOT NULL CHECK (length(fixmedins_name) BETWEEN 1 AND 200),
    admdvs          text NOT NULL CHECK (admdvs ~ '^[0-9]{6}$'),
    level           text NOT NULL CHECK (level IN ('community', '1', '2', '3')),
    inst_type       text NOT NULL CHECK (inst_type IN ('hospital', 'pharmacy'))
);

-- Interim secret store: the terminal's request-signing key. The HSM issue replaces it
-- with keys derived inside the HSM from the terminal MAC master key.
CREATE TABLE terminals (
    terminal_id     text PRIMARY KEY CHECK (terminal_id ~ '^[A-Za-z0-9_-]{1,40}$'),
    fixmedins_code  text NOT NULL REFERENCES institutions,
    mac_key         bytea NOT NULL CHECK (length(mac_key) >= 16),
    active          boolean NOT NULL DEFAULT true
);

CREATE TABLE operators (
    fixmedins_code  text NOT NULL REFERENCES institutions,
    opter           text NOT NULL CHECK (length(opter) BETWEEN 1 AND 30),
    opter_name      text NOT NULL DEFAULT '',
    PRIMARY KEY (fixmedins_code, opter)
);

CREATE SEQUENCE sign_no_seq;
CREATE TABLE sign_ins (
    sign_no         text PRIMARY KEY,
    fixmedins_code  text NOT NULL,
    opter           text NOT NULL,
    terminal_id     text NOT NULL REFERENCES terminals,
    signed_in_at    timestamptz NOT NULL DEFAULT now(),
    signed_out_at   timestamptz,
    FOREIGN KEY (fixmedins_code, opter) REFERENCES operators
);

CREATE TABLE persons (
    psn_no            text PRIMARY KEY CHECK (length(psn_no) BETWEEN 1 AND 30),
    insuplc_admdvs    text NOT NULL CHECK (insuplc_admdvs ~ '^[0-9]{6}$'),
    psn_cert_type     text NOT NULL DEFAULT '01',
    certno            text NOT NULL UNIQUE,
    psn_name          text NOT NULL,
    gend              text NOT NULL CHECK (gend IN ('1', '2')),
    naty              text NOT NULL DEFAULT '01',
    brdy              date NOT NULL,
    insutype          text NOT NULL CHECK (insutype IN ('310', '390')),
    retired           boolean NOT NULL DEFAULT false,
    psn_insu_stas     text NOT NULL DEFAULT '1' CHECK (psn_insu_stas IN ('0', '1', '2', '3', '4')),
    psn_insu_date     date NOT NULL,
    cvlserv_flag      text NOT NULL DEFAULT '0' CHECK (cvlserv_flag IN ('0', '1')),
    emp_name          text NOT NULL DEFAULT '',
    acct_balance_fen  bigint NOT NULL DEFAULT 0 CHECK (acct_balance_fen >= 0),
    CHECK (insutype = '310' OR acct_balance_fen = 0)
);

-- Annual accumulators, with the limits that applied when the row was opened, so that
-- the database itself refuses a fund payment past the cap.
CREATE TABLE person_accumulators (
    psn_no                    text NOT NULL REFERENCES persons,
    year                      integer NOT NULL CHECK (year BETWEEN 2000 AND 2200),
    insuplc_admdvs            text NOT NULL,
    deductible_fen            bigint NOT NULL CHECK (deductible_fen >= 0),
    outpatient_limit_fen      bigint NOT NULL CHECK (outpatient_limit_fen >= 0),
    annual_cap_fen            bigint NOT NULL CHECK (annual_cap_fen >= 0),
    deductible_used_fen       bigint NOT NULL DEFAULT 0,
    outpatient_fund_paid_fen  bigint NOT NULL DEFAULT 0,
    fund_paid_fen             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (psn_no, year),
    CHECK (deductible_used_fen BETWEEN 0 AND deductible_fen),
    CHECK (outpatient_fund_paid_fen BETWEEN 0 AND outpatient_limit_fen),
    CHECK (fund_paid_fen BETWEEN 0 AND annual_cap_fen)
);

CREATE TABLE catalog_items (
    med_list_codg               text PRIMARY KEY CHECK (length(med_list_codg) BETWEEN 1 AND 50),
    name                        text NOT NULL,
    chrgitm_lv                  text NOT NULL CHECK (chrgitm_lv IN ('01', '02', '03')),
    list_type                   text NOT NULL,
    price_ceiling_fen_per_unit  bigint CHECK (price_ceiling_fen_per_unit > 0),
    selfpay_prop_bp             integer NOT NULL CHECK (selfpay_prop_bp BETWEEN 0 AND 10000),
    CHECK (chrgitm_lv = '02' OR selfpay_prop_bp = 0)
);

CREATE SEQUENCE mdtrt_id_seq;
CREATE TABLE visits (
    mdtrt_id         text PRIMARY KEY,
    psn_no           text NOT NULL REFERENCES persons,
    insuplc_admdvs   text NOT NULL,
    mdtrtarea_admvs  text NOT NULL,
    fixmedins_code   text NOT NULL REFERENCES institutions,
    insutype         text NOT NULL,
    med_type         text NOT NULL DEFAULT '11',
    ipt_otp_no       text NOT NULL,
    mdtrt_cert_type  text NOT NULL,
    begntime         timestamp NOT NULL,
    registration     jsonb NOT NULL,
    visit_info       jsonb,
    state            text NOT NULL CHECK (state IN ('registered', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz
);
CREATE UNIQUE INDEX visits_open_outpatient_number
    ON visits (fixmedins_code, ipt_otp_no) WHERE state = 'registered';
CREATE INDEX visits_psn_no ON visits (psn_no);

CREATE TABLE fee_details (
    mdtrt_id                 text NOT NULL REFERENCES visits,
    feedetl_sn               text NOT NULL,
    chrg_bchno               text NOT NULL,
    med_list_codg            text NOT NULL,
    medins_list_codg         text NOT NULL,
    cnt                      numeric(16, 4) NOT NULL CHECK (cnt > 0),
    pric                     numeric(16, 6) NOT NULL CHECK (pric >= 0),
    fee_ocur_time            timestamp NOT NULL,
    det_item_fee_sumamt_fen  bigint NOT NULL CHECK (det_item_fee_sumamt_fen >= 0),
    fulamt_ownpay_amt_fen    bigint NOT NULL CHECK (fulamt_ownpay_amt_fen >= 0),
    overlmt_amt_fen          bigint NOT NULL CHECK (overlmt_amt_fen >= 0),
    preselfpay_amt_fen       bigint NOT NULL CHECK (preselfpay_amt_fen >= 0),
    inscp_scp_amt_fen        bigint NOT NULL CHECK (inscp_scp_amt_fen >= 0),
    pric_uplmt_amt_fen       bigint NOT NULL CHECK (pric_uplmt_amt_fen >= 0),
    selfpay_prop_bp          integer NOT NULL,
    chrgitm_lv               text NOT NULL,
    memo                     text NOT NULL DEFAULT '',
    detail                   jsonb NOT NULL,
    setl_id                  text,
    PRIMARY KEY (mdtrt_id, feedetl_sn),
    CHECK (det_item_fee_sumamt_fen = fulamt_ownpay_amt_fen + overlmt_amt_fen
                                     + preselfpay_amt_fen + inscp_scp_amt_fen)
);

-- The ledger: journal entries of postings that sum to zero (debit +, credit -).
-- Accounts are text codes:
--   fund:<insuplc>:<insutype>     pooled fund          acct:<psn_no>        personal account
--   recv:<fixmedins>:<insuplc>    owed to institution  cash:<fixmedins>     cash it collected
--   oop:<insuplc>                 patients' own money  contrib:<insuplc>:<insutype> contributions
CREATE TABLE journal_entries (
    entry_id        bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('opening', 'settle', 'cancel')),
    insuplc_admdvs  text NOT NULL,
    setl_id         text,
    fixmedins_code  text,
    msgid           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'opening') = (setl_id IS NULL))
);
-- A settlement is posted at most once and cancelled at most once.
CREATE UNIQUE INDEX journal_one_entry_per_settlement_kind
    ON journal_entries (setl_id, kind) WHERE setl_id IS NOT NULL;

CREATE TABLE postings (
    posting_id  bigserial PRIMARY KEY,
    entry_id    bigint NOT NULL REFERENCES journal_entries,
    account     text NOT NULL CHECK (account ~ '^(fund|acct|recv|cash|oop|contrib):[A-Za-z0-9:]+$'),
    amount_fen  bigint NOT NULL CHECK (amount_fen <> 0)
);
CREATE INDEX postings_entry ON postings (entry_id);
CREATE INDEX postings_account ON postings (account);

CREATE FUNCTION postings_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    SELECT sum(amount_fen) INTO total FROM postings WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance (sum % fen)', NEW.entry_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER postings_balance_at_commit
    AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION postings_entry_balances();

-- History is append-only: corrections are new entries, never edits.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE SEQUENCE setl_id_seq;
CREATE TABLE settlements (
    setl_id                text PRIMARY KEY,
    mdtrt_id               text NOT NULL REFERENCES visits,
    psn_no                 text NOT NULL REFERENCES persons,
    insuplc_admdvs         text NOT NULL,
    mdtrtarea_admvs        text NOT NULL,
    fixmedins_code         text NOT NULL REFERENCES institutions,
    insutype               text NOT NULL,
    med_type               text NOT NULL,
    year                   integer NOT NULL,
    msgid                  text NOT NULL,
    state                  text NOT NULL CHECK (state IN ('settled', 'cancelled')),
    setl_time              timestamptz NOT NULL,
    medfee_sumamt_fen      bigint NOT NULL CHECK (medfee_sumamt_fen >= 0),
    fulamt_ownpay_amt_fen  bigint NOT NULL CHECK (fulamt_ownpay_amt_fen >= 0),
    overlmt_selfpay_fen    bigint NOT NULL CHECK (overlmt_selfpay_fen >= 0),
    preselfpay_amt_fen     bigint NOT NULL CHECK (preselfpay_amt_fen >= 0),
    inscp_scp_amt_fen      bigint NOT NULL CHECK (inscp_scp_amt_fen >= 0),
    act_pay_dedc_fen       bigint NOT NULL CHECK (act_pay_dedc_fen >= 0),
    hifp_pay_fen           bigint NOT NULL CHECK (hifp_pay_fen >= 0),
    fund_pay_sumamt_fen    bigint NOT NULL CHECK (fund_pay_sumamt_fen >= 0),
    psn_part_amt_fen       bigint NOT NULL CHECK (psn_part_amt_fen >= 0),
    acct_pay_fen           bigint NOT NULL CHECK (acct_pay_fen >= 0),
    psn_cash_pay_fen       bigint NOT NULL CHECK (psn_cash_pay_fen >= 0),
    hosp_part_amt_fen      bigint NOT NULL CHECK (hosp_part_amt_fen >= 0),
    balc_before_fen        bigint NOT NULL CHECK (balc_before_fen >= 0),
    balc_fen               bigint NOT NULL CHECK (balc_fen >= 0),
    answer                 jsonb NOT NULL,
    entry_id               bigint NOT NULL REFERENCES journal_entries,
    cancel_entry_id        bigint REFERENCES journal_entries,
    cancel_msgid           text,
    cancelled_at           timestamptz,
    CHECK (medfee_sumamt_fen = fulamt_ownpay_amt_fen + overlmt_selfpay_fen
                               + preselfpay_amt_fen + inscp_scp_amt_fen),
    CHECK (psn_part_amt_fen = medfee_sumamt_fen - fund_pay_sumamt_fen - hosp_part_amt_fen),
    CHECK (psn_part_amt_fen = acct_pay_fen + psn_cash_pay_fen),
    CHECK (balc_fen = balc_before_fen - acct_pay_fen),
    CHECK ((state = 'cancelled') = (cancel_entry_id IS NOT NULL))
);
CREATE UNIQUE INDEX settlements_one_live_per_visit ON settlements (mdtrt_id) WHERE state = 'settled';
CREATE INDEX settlements_psn_year ON settlements (psn_no, year);

-- Idempotency: one row per (institution, msgid) of every state-changing request, with
-- the SHA-256 of its body and the exact answer bytes given, stored in the same
-- transaction as the change itself, so that a repeat gets the same bytes back.
CREATE TABLE tx_log (
    fixmedins_code  text NOT NULL,
    msgid           text NOT NULL,
    infno           text NOT NULL,
    body_sha256     bytea NOT NULL CHECK (length(body_sha256) = 32),
    answer          bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fixmedins_code, msgid)
);
