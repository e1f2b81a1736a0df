"""Event store: events, idempotency records, outbox, processed messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

# The appender's one-round-trip batch append (see eventstore/appender.py). A later
# change to it gets its own revision with the whole new text.
APPEND_FUNCTION = r"""
-- eventstore_append: one round trip appends a whole batch of requests.
--
-- Runs as one statement, hence one transaction. It takes the appenders' shared
-- advisory lock first, so positions are handed out gap-free and in commit
-- order. Each request is judged on its own (tracking, idempotency keys,
-- expected versions) against the state under the lock plus the requests
-- accepted before it; a refused request writes nothing. Returns one row per
-- request, in order.
--
-- The batch comes as one JSON object of parallel arrays (one parameter is far
-- cheaper for the client to encode than many): per request its number of
-- writes and keys and its tracking (consumer, message id or nulls); per write
-- its stream, expected version (null: any), owner and number of events; per
-- event its id, type, data and metadata; per key its scope, key and the slice
-- [first, last) of the request's events it covers.
CREATE OR REPLACE FUNCTION eventstore_append(
    batch jsonb, with_outbox boolean, channel text, lock_key bigint
) RETURNS TABLE (status text, detail jsonb, positions bigint[], versions int[], recorded_at timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    r_writes int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'r_writes') WITH ORDINALITY AS a(x, i) ORDER BY i);
    r_keys int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'r_keys') WITH ORDINALITY AS a(x, i) ORDER BY i);
    r_consumer text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'r_consumer') WITH ORDINALITY AS a(x, i) ORDER BY i);
    r_message text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'r_message') WITH ORDINALITY AS a(x, i) ORDER BY i);
    w_stream text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'w_stream') WITH ORDINALITY AS a(x, i) ORDER BY i);
    w_expected int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'w_expected') WITH ORDINALITY AS a(x, i) ORDER BY i);
    w_owner text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'w_owner') WITH ORDINALITY AS a(x, i) ORDER BY i);
    w_events int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'w_events') WITH ORDINALITY AS a(x, i) ORDER BY i);
    e_id uuid[] := ARRAY(SELECT x::uuid FROM jsonb_array_elements_text(batch->'e_id') WITH ORDINALITY AS a(x, i) ORDER BY i);
    e_type text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'e_type') WITH ORDINALITY AS a(x, i) ORDER BY i);
    e_data jsonb[] := ARRAY(SELECT x FROM jsonb_array_elements(batch->'e_data') WITH ORDINALITY AS a(x, i) ORDER BY i);
    e_meta jsonb[] := ARRAY(SELECT x FROM jsonb_array_elements(batch->'e_meta') WITH ORDINALITY AS a(x, i) ORDER BY i);
    k_scope text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'k_scope') WITH ORDINALITY AS a(x, i) ORDER BY i);
    k_key text[] := ARRAY(SELECT x FROM jsonb_array_elements_text(batch->'k_key') WITH ORDINALITY AS a(x, i) ORDER BY i);
    k_first int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'k_first') WITH ORDINALITY AS a(x, i) ORDER BY i);
    k_last int[] := ARRAY(SELECT x::int FROM jsonb_array_elements_text(batch->'k_last') WITH ORDINALITY AS a(x, i) ORDER BY i);
    head bigint;
    ts timestamptz;
    cur jsonb;  -- stream id -> its version, as the batch goes
    wi int := 0;
    ei int := 0;
    ki int := 0;
    r int;
    w int;
    j int;
    k int;
    nev int;
    ver int;
    refusal text;
    why jsonb;
    p bigint[];
    v int[];
    rs text[];
    a_pos bigint[] := '{}';
    a_id uuid[] := '{}';
    a_stream text[] := '{}';
    a_ver int[] := '{}';
    a_type text[] := '{}';
    a_data jsonb[] := '{}';
    a_meta jsonb[] := '{}';
    a_owner text[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT coalesce(max(ev.position), 0) INTO head FROM events ev;
    ts := clock_timestamp();
    SELECT coalesce(jsonb_object_agg(u.s, coalesce(
               (SELECT ev.version FROM events ev WHERE ev.stream_id = u.s
                ORDER BY ev.version DESC LIMIT 1), 0)), '{}'::jsonb)
      INTO cur FROM (SELECT DISTINCT unnest(w_stream) AS s) u;

    FOR r IN 1 .. coalesce(array_length(r_writes, 1), 0) LOOP
        refusal := NULL;
        why := NULL;
        nev := 0;
        FOR w IN wi + 1 .. wi + r_writes[r] LOOP
            nev := nev + w_events[w];
        END LOOP;

        IF r_consumer[r] IS NOT NULL AND EXISTS (
            SELECT 1 FROM processed_messages pm
            WHERE pm.consumer = r_consumer[r] AND pm.message_id = r_message[r]) THEN
            refusal := 'processed';
            why := jsonb_build_object('consumer', r_consumer[r], 'message_id', r_message[r]);
        END IF;

        IF refusal IS NULL AND r_keys[r] > 0 THEN
            SELECT jsonb_agg(jsonb_build_object('scope', ik.scope, 'key', ik.key, 'result', ik.result))
              INTO why
              FROM idempotency_keys ik
              JOIN unnest(k_scope[ki + 1 : ki + r_keys[r]], k_key[ki + 1 : ki + r_keys[r]])
                   AS u(scope, key) ON ik.scope = u.scope AND ik.key = u.key;
            IF why IS NOT NULL THEN
                refusal := 'duplicate';
            END IF;
        END IF;

        IF refusal IS NULL THEN
            FOR w IN wi + 1 .. wi + r_writes[r] LOOP
                ver := (cur ->> w_stream[w])::int;
                IF w_expected[w] IS NOT NULL AND w_expected[w] <> ver THEN
                    refusal := 'conflict';
                    why := jsonb_build_object('stream_id', w_stream[w],
                                              'expected', w_expected[w], 'actual', ver);
                    EXIT;
                END IF;
            END LOOP;
        END IF;

        p := '{}';
        v := '{}';
        rs := '{}';
        IF refusal IS NULL THEN
            j := ei;
            FOR w IN wi + 1 .. wi + r_writes[r] LOOP
                ver := (cur ->> w_stream[w])::int;
                FOR k IN 1 .. w_events[w] LOOP
                    j := j + 1;
                    head := head + 1;
                    ver := ver + 1;
                    p := p || head;
                    v := v || ver;
                    rs := rs || w_stream[w];
                    a_pos := a_pos || head;
                    a_id := a_id || e_id[j];
                    a_stream := a_stream || w_stream[w];
                    a_ver := a_ver || ver;
                    a_type := a_type || e_type[j];
                    a_data := a_data || e_data[j];
                    a_meta := a_meta || e_meta[j];
                    a_owner := a_owner || w_owner[w];
                END LOOP;
                cur := jsonb_set(cur, ARRAY[w_stream[w]], to_jsonb(ver));
            END LOOP;
            FOR k IN ki + 1 .. ki + r_keys[r] LOOP
                INSERT INTO idempotency_keys (scope, key, result)
                SELECT k_scope[k], k_key[k], jsonb_build_object(
                    'first_position', p[k_first[k] + 1],
                    'last_position', p[k_last[k]],
                    'stream_versions', jsonb_object_agg(x.s, x.v))
                FROM unnest(rs[k_first[k] + 1 : k_last[k]], v[k_first[k] + 1 : k_last[k]]) AS x(s, v);
            END LOOP;
            IF r_consumer[r] IS NOT NULL THEN
                INSERT INTO processed_messages (consumer, message_id)
                VALUES (r_consumer[r], r_message[r]);
            END IF;
        END IF;

        wi := wi + r_writes[r];
        ei := ei + nev;
        ki := ki + r_keys[r];
        status := coalesce(refusal, 'ok');
        detail := why;
        positions := p;
        versions := v;
        recorded_at := ts;
        RETURN NEXT;
    END LOOP;

    IF array_length(a_pos, 1) > 0 THEN
        INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, owner, recorded_at)
        SELECT u.p, u.e, u.s, u.v, u.t, u.d, u.m, u.o, ts
        FROM unnest(a_pos, a_id, a_stream, a_ver, a_type, a_data, a_meta, a_owner)
             AS u(p, e, s, v, t, d, m, o);
        IF with_outbox THEN
            INSERT INTO outbox (position) SELECT unnest(a_pos);
        END IF;
        PERFORM pg_notify(channel, head::text);
    END IF;
END
$fn$;
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `position` is assigned by the appender under one advisory lock, so it is
    # gap-free and in commit order (see eventstore/appender.py).
    op.execute(
        """
        CREATE TABLE events (
            position     bigint      PRIMARY KEY,
            event_id     uuid        NOT NULL UNIQUE,
            stream_id    text        NOT NULL,
            version      integer     NOT NULL CHECK (version >= 1),
            type         text        NOT NULL,
            data         jsonb       NOT NULL,
            metadata     jsonb       NOT NULL,
            recorded_at  timestamptz NOT NULL,
            owner        text,  -- who may read the stream besides staff (a customer id)
            CONSTRAINT events_stream_version UNIQUE (stream_id, version)
        )
        """
    )
    op.execute("CREATE INDEX events_type_position ON events (type, position)")
    op.execute("CREATE INDEX events_owner_position ON events (owner, position)")
    op.execute(
        "CREATE INDEX events_correlation ON events ((metadata->>'correlation_id'), position)"
    )
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            scope       text        NOT NULL,
            key         text        NOT NULL,
            result      jsonb       NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE outbox (
            position      bigint      PRIMARY KEY REFERENCES events (position),
            published_at  timestamptz
        )
        """
    )
    op.execute("CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL")
    op.execute(
        """
        CREATE TABLE processed_messages (
            consumer      text        NOT NULL,
            message_id    text        NOT NULL,
            processed_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, message_id)
        )
        """
    )
    op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION eventstore_append")
    op.execute("DROP TABLE processed_messages")
    op.execute("DROP TABLE outbox")
    op.execute("DROP TABLE idempotency_keys")
    op.execute("DROP TABLE events")
