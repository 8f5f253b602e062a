-- pgrelay outbox schema, for RELAY_SOURCE=outbox.
--
-- Rendered for table pgrelay_outbox, wake channel pgrelay_outbox, payloads of at most
-- 1048576 bytes (RELAY_OUTBOX_TABLE, RELAY_OUTBOX_WAKE_CHANNEL, RELAY_MAX_PAYLOAD).
-- Apply it with psql or a migration tool, or let the leading relay apply it for its
-- own settings (RELAY_OUTBOX_MIGRATE=true). Applying it again changes nothing, and takes
-- no lock on the table unless the payload limit changed or the trigger is missing.
--
-- The application inserts one row per message, in the transaction that makes the change:
--
--   INSERT INTO "pgrelay_outbox" (channel, payload) VALUES ('orders', '{"id":42}');
--
-- The leading relay publishes committed rows in id order and deletes them once Redis has
-- them; a row whose transaction commits late is published when it commits.

CREATE TABLE IF NOT EXISTS "pgrelay_outbox" (
    id         bigserial PRIMARY KEY,
    channel    text NOT NULL CONSTRAINT channel_1_to_63_bytes CHECK (octet_length(channel) BETWEEN 1 AND 63),
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Rows the relay refused (payload over the limit, bad channel) are moved here with the
-- reason, never cut or dropped in silence.
CREATE TABLE IF NOT EXISTS "pgrelay_outbox_rejected" (
    rejected_id bigserial PRIMARY KEY,
    id          bigint NOT NULL,
    channel     text,
    payload     text,
    created_at  timestamptz,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);

-- The payload limit, as a named CHECK, so that an INSERT over it fails with the limit in
-- the message. A different limit replaces the old one; NOT VALID leaves rows already
-- there unchecked (the relay refuses those that are too large).
DO $pgrelay$
DECLARE
    old record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint
                   WHERE conrelid = '"pgrelay_outbox"'::regclass AND conname = 'payload_at_most_1048576_bytes') THEN
        FOR old IN SELECT conname FROM pg_constraint
                   WHERE conrelid = '"pgrelay_outbox"'::regclass AND conname LIKE 'payload\_at\_most\_%\_bytes' LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', '"pgrelay_outbox"'::regclass, old.conname);
        END LOOP;
        ALTER TABLE "pgrelay_outbox" ADD CONSTRAINT payload_at_most_1048576_bytes
            CHECK (octet_length(payload) <= 1048576) NOT VALID;
    END IF;
END
$pgrelay$;

-- The wake-up: one notification with an empty payload per inserting statement (and
-- PostgreSQL sends a transaction's identical notifications once). It carries no data;
-- the relay reads the rows, which are visible when the notification is delivered.
CREATE OR REPLACE FUNCTION "pgrelay_outbox_wake"() RETURNS trigger LANGUAGE plpgsql AS $pgrelay$
BEGIN
    PERFORM pg_notify('pgrelay_outbox', '');
    RETURN NULL;
END
$pgrelay$;

DO $pgrelay$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger
                   WHERE tgrelid = '"pgrelay_outbox"'::regclass AND tgname = 'pgrelay_wake') THEN
        CREATE TRIGGER pgrelay_wake AFTER INSERT ON "pgrelay_outbox"
            FOR EACH STATEMENT EXECUTE FUNCTION "pgrelay_outbox_wake"();
    END IF;
END
$pgrelay$;
