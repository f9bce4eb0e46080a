"""The gallery of record on PostgreSQL: its tables, the functions kiosks call, and who may do what.

Everything lives in the schema ``edge_fleet``, owned by the admin's role. Kiosks log in with a role each, members of
``edge_fleet_kiosk``, which may read people (with their access groups), templates (sealed with the fleet key, which
the server never holds), the change sequence, the policy (door rules and settings: edge.fleet.access; the bundle
each board is to run) and the bundles rolled out, add
decisions and kept visitors as itself (row-level security; it may delete its own visitors), and call three
functions: ``push_change`` (an enrolment, rename,
suspension or erasure made at the kiosk, recorded by the owner's ``record_change``: a kiosk only requests an
erasure, the function performs it), ``my_key`` (the fleet key wrapped to the calling kiosk's public key) and
``report`` (its status; it also deletes the decisions past the fleet's retention). It cannot delete a person,
change anyone's access or the policy, or read another kiosk's row or key.

Every change takes the next number of one gapless sequence under an advisory lock, so numbers commit in order and a
kiosk that has applied change N has applied every change before it; each is keyed by (kiosk, its local number), so
a change sent twice is recorded once. An erasure leaves a tombstone holding only the person's id, which wins over
any change that arrives later.
"""
from __future__ import annotations

SCHEMA_VERSION = 1
SCHEMA = "edge_fleet"
KIOSK_GROUP = "edge_fleet_kiosk"
CHANNEL = "edge_fleet_changes"
MIN_SERVER_VERSION = 130000

TABLES = """
CREATE SCHEMA edge_fleet;
CREATE TABLE edge_fleet.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE edge_fleet.kiosks (
    id text PRIMARY KEY, role name NOT NULL UNIQUE, public_key bytea NOT NULL,
    added timestamptz NOT NULL DEFAULT now(), revoked timestamptz, instance text, last_seen timestamptz,
    applied_seq bigint NOT NULL DEFAULT 0, replica_age_s double precision, bundle text, liveness text, note text,
    rollout text);
CREATE TABLE edge_fleet.bundles (
    id text PRIMARY KEY, board text NOT NULL, name text NOT NULL, archive bytea NOT NULL,
    created timestamptz NOT NULL DEFAULT now());
CREATE TABLE edge_fleet.kiosk_keys (
    kiosk_id text PRIMARY KEY REFERENCES edge_fleet.kiosks(id) ON DELETE CASCADE,
    key_id text NOT NULL, wrapped bytea NOT NULL);
CREATE TABLE edge_fleet.people (
    id text PRIMARY KEY, name text NOT NULL UNIQUE, consent text, suspended boolean NOT NULL DEFAULT false,
    groups text[] NOT NULL DEFAULT '{}', created timestamptz NOT NULL DEFAULT now(), origin_kiosk text,
    possible_duplicate_of text);
CREATE TABLE edge_fleet.policy (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE edge_fleet.templates (
    id text PRIMARY KEY, person_id text NOT NULL REFERENCES edge_fleet.people(id) ON DELETE CASCADE,
    model text NOT NULL, space text, producer text, dim integer NOT NULL, key_id text NOT NULL,
    sealed bytea NOT NULL, source text, crop bytea, created timestamptz NOT NULL DEFAULT now());
CREATE INDEX templates_by_person ON edge_fleet.templates(person_id);
CREATE TABLE edge_fleet.erased (person_id text PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE edge_fleet.changes (
    seq bigint PRIMARY KEY, kind text NOT NULL, person_id text NOT NULL, origin_kiosk text, origin_seq bigint,
    time timestamptz NOT NULL DEFAULT now(), UNIQUE (origin_kiosk, origin_seq));
CREATE TABLE edge_fleet.events (
    id bigserial PRIMARY KEY, kiosk_id text NOT NULL, local_seq bigint NOT NULL, time text, source text,
    frame bigint, identity text, score double precision, box text, model text, track bigint, outcome text,
    reason text, liveness text, received timestamptz NOT NULL DEFAULT now(), UNIQUE (kiosk_id, local_seq));
CREATE INDEX events_by_received ON edge_fleet.events(received);
CREATE TABLE edge_fleet.visitors (
    kiosk_id text NOT NULL, local_id bigint NOT NULL, time text, source text, outcome text, score double precision,
    liveness text, looks bytea NOT NULL, dim integer NOT NULL, model text, space text, producer text, crop bytea,
    key_id text NOT NULL, received timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (kiosk_id, local_id));
CREATE TABLE edge_fleet.audit (
    id bigserial PRIMARY KEY, time timestamptz NOT NULL DEFAULT now(), actor name NOT NULL DEFAULT session_user,
    action text NOT NULL, detail jsonb);
"""

# Functions run as their owner (SECURITY DEFINER) with a fixed search path; $$-quoted bodies, one per statement.
FUNCTIONS = r"""
CREATE FUNCTION edge_fleet.calling_kiosk() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = edge_fleet, pg_temp AS $$
    SELECT id FROM kiosks WHERE role = session_user AND revoked IS NULL
$$;

CREATE FUNCTION edge_fleet.free_name(wanted text, actor text, person text) RETURNS text LANGUAGE plpgsql
SET search_path = edge_fleet, pg_temp AS $$
DECLARE candidate text := wanted;
BEGIN
    IF EXISTS (SELECT 1 FROM people WHERE name = candidate AND id <> person) THEN
        candidate := wanted || ' (' || coalesce(actor, 'desk') || ')';
    END IF;
    IF EXISTS (SELECT 1 FROM people WHERE name = candidate AND id <> person) THEN
        candidate := candidate || ' ' || left(person, 6);
    END IF;
    RETURN candidate;
END $$;

CREATE FUNCTION edge_fleet.record_change(actor text, actor_seq bigint, change_kind text, person text, detail jsonb,
                                         new_templates jsonb) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = edge_fleet, pg_temp AS $$
DECLARE
    done changes%ROWTYPE;
    next_seq bigint;
    clash text;
    current_key text;
    person_name text;
BEGIN
    -- one writer of the change sequence at a time: numbers are gapless and commit in order
    PERFORM pg_advisory_xact_lock(hashtext('edge_fleet.changes'));
    IF actor IS NOT NULL THEN
        SELECT * INTO done FROM changes WHERE origin_kiosk = actor AND origin_seq = actor_seq;
        IF FOUND THEN
            RETURN jsonb_build_object('seq', done.seq, 'name', (SELECT name FROM people WHERE id = person),
                                      'repeat', true);
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM erased WHERE person_id = person) THEN
        RETURN jsonb_build_object('superseded', true);
    END IF;
    IF change_kind = 'enrol' THEN
        SELECT value INTO current_key FROM meta WHERE key = 'key_id';
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(new_templates) e WHERE e->>'key_id' <> current_key) THEN
            RAISE EXCEPTION 'templates sealed with a fleet key that is not the current one (%)', current_key
                USING ERRCODE = 'EF001';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM people WHERE id = person) THEN
            SELECT id INTO clash FROM people WHERE name = detail->>'name';
            INSERT INTO people(id, name, consent, suspended, origin_kiosk, possible_duplicate_of)
                VALUES (person, free_name(detail->>'name', actor, person), detail->>'consent',
                        coalesce((detail->>'suspended')::boolean, false), actor, clash);
        ELSIF detail->>'consent' IS NOT NULL THEN
            UPDATE people SET consent = detail->>'consent' WHERE id = person;
        END IF;
        INSERT INTO templates(id, person_id, model, space, producer, dim, key_id, sealed, source, crop)
            SELECT e->>'id', person, e->>'model', e->>'space', e->>'producer', (e->>'dim')::integer, e->>'key_id',
                   decode(e->>'sealed', 'base64'), e->>'source', decode(e->>'crop', 'base64')
            FROM jsonb_array_elements(new_templates) e
            ON CONFLICT (id) DO NOTHING;
    ELSIF change_kind IN ('rename', 'suspend', 'groups') THEN
        IF NOT EXISTS (SELECT 1 FROM people WHERE id = person) THEN
            RAISE EXCEPTION 'no person % to %', person, change_kind USING ERRCODE = 'EF003';
        END IF;
        IF change_kind = 'rename' THEN
            SELECT name INTO person_name FROM people WHERE id = person;
            UPDATE people SET name = free_name(detail->>'name', actor, person) WHERE id = person;
            -- the decisions follow the name, so that an erasure finds every one
            UPDATE events SET identity = (SELECT name FROM people WHERE id = person) WHERE identity = person_name;
        ELSIF change_kind = 'suspend' THEN
            UPDATE people SET suspended = (detail->>'suspended')::boolean WHERE id = person;
        ELSE
            UPDATE people SET groups = ARRAY(SELECT jsonb_array_elements_text(detail->'groups')) WHERE id = person;
        END IF;
    ELSIF change_kind = 'erase' THEN
        SELECT name INTO person_name FROM people WHERE id = person;
        DELETE FROM events WHERE identity = person_name;
        DELETE FROM people WHERE id = person;
    ELSIF change_kind = 'forget_visitor' THEN
        DELETE FROM visitors WHERE kiosk_id = detail->>'kiosk' AND local_id = (detail->>'visitor')::bigint;
    ELSIF change_kind = 'policy' THEN
        INSERT INTO policy(key, value) VALUES (detail->>'key', detail->'value')
            ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    ELSE
        RAISE EXCEPTION 'unknown change %', change_kind USING ERRCODE = 'EF003';
    END IF;
    next_seq := coalesce((SELECT max(seq) FROM changes), 0) + 1;
    INSERT INTO changes(seq, kind, person_id, origin_kiosk, origin_seq)
        VALUES (next_seq, change_kind, person, actor, actor_seq);
    IF change_kind = 'erase' THEN
        INSERT INTO erased(person_id, seq) VALUES (person, next_seq);
    END IF;
    INSERT INTO audit(action, detail)
        VALUES (change_kind, jsonb_build_object('person', person, 'kiosk', actor, 'seq', next_seq));
    PERFORM pg_notify('edge_fleet_changes', next_seq::text);
    RETURN jsonb_build_object('seq', next_seq, 'name', (SELECT name FROM people WHERE id = person));
END $$;

CREATE FUNCTION edge_fleet.push_change(actor_seq bigint, change_kind text, person text, detail jsonb,
                                       new_templates jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = edge_fleet, pg_temp AS $$
DECLARE me text := calling_kiosk();
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'role % is not an active kiosk of this fleet', session_user USING ERRCODE = '42501';
    END IF;
    IF change_kind NOT IN ('enrol', 'rename', 'suspend', 'erase') THEN
        RAISE EXCEPTION 'a kiosk may not make a % change', change_kind USING ERRCODE = '42501';
    END IF;
    RETURN record_change(me, actor_seq, change_kind, person, detail, new_templates);
END $$;

CREATE FUNCTION edge_fleet.my_key(OUT key_id text, OUT wrapped bytea) LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = edge_fleet, pg_temp AS $$
    SELECT k.key_id, k.wrapped FROM kiosk_keys k WHERE k.kiosk_id = calling_kiosk()
$$;

CREATE FUNCTION edge_fleet.report(instance_id text, applied bigint, age double precision, bundle_name text,
                                  liveness_state text, note_text text, rollout_state text) RETURNS void LANGUAGE plpgsql
SECURITY DEFINER SET search_path = edge_fleet, pg_temp AS $$
DECLARE
    me text := calling_kiosk();
    held text;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'role % is not an active kiosk of this fleet', session_user USING ERRCODE = '42501';
    END IF;
    SELECT instance INTO held FROM kiosks WHERE id = me;
    IF held IS NOT NULL AND held <> instance_id THEN
        RAISE EXCEPTION 'kiosk % is already in use by another gallery (%): each kiosk id serves one kiosk', me, held
            USING ERRCODE = 'EF002';
    END IF;
    UPDATE kiosks SET instance = instance_id, last_seen = now(), applied_seq = applied, replica_age_s = age,
                      bundle = coalesce(bundle_name, bundle), liveness = coalesce(liveness_state, liveness),
                      note = coalesce(note_text, note), rollout = coalesce(rollout_state, rollout)
        WHERE id = me;
    -- retention, applied centrally: decisions past the fleet's settings go (kept forever when unset)
    DELETE FROM events WHERE identity IS NULL AND received < now() - make_interval(
        secs => 86400 * (SELECT (value->>'keep_unknown_days')::float8 FROM policy WHERE key = 'settings'));
    DELETE FROM events WHERE identity IS NOT NULL AND received < now() - make_interval(
        secs => 86400 * (SELECT (value->>'keep_named_days')::float8 FROM policy WHERE key = 'settings'));
    -- kept visitors go with the unknown decisions' retention, a week when the fleet sets none (a kiosk's default)
    DELETE FROM visitors WHERE received < now() - make_interval(secs => 86400 * coalesce(
        (SELECT (value->>'keep_unknown_days')::float8 FROM policy WHERE key = 'settings'), 7));
END $$;
"""

GRANTS = """
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA edge_fleet FROM PUBLIC;
GRANT USAGE ON SCHEMA edge_fleet TO edge_fleet_kiosk;
GRANT SELECT ON edge_fleet.meta, edge_fleet.people, edge_fleet.templates, edge_fleet.changes, edge_fleet.erased,
    edge_fleet.policy, edge_fleet.bundles TO edge_fleet_kiosk;
GRANT SELECT, INSERT ON edge_fleet.events TO edge_fleet_kiosk;
GRANT USAGE ON SEQUENCE edge_fleet.events_id_seq TO edge_fleet_kiosk;
GRANT EXECUTE ON FUNCTION edge_fleet.push_change(bigint, text, text, jsonb, jsonb),
    edge_fleet.my_key(), edge_fleet.report(text, bigint, double precision, text, text, text, text),
    edge_fleet.calling_kiosk() TO edge_fleet_kiosk;
ALTER TABLE edge_fleet.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY kiosk_adds_its_own ON edge_fleet.events FOR INSERT TO edge_fleet_kiosk
    WITH CHECK (kiosk_id = edge_fleet.calling_kiosk());
CREATE POLICY kiosk_reads_its_own ON edge_fleet.events FOR SELECT TO edge_fleet_kiosk
    USING (kiosk_id = edge_fleet.calling_kiosk());
GRANT SELECT, INSERT, DELETE ON edge_fleet.visitors TO edge_fleet_kiosk;
ALTER TABLE edge_fleet.visitors ENABLE ROW LEVEL SECURITY;
CREATE POLICY kiosk_keeps_its_own_visitors ON edge_fleet.visitors FOR ALL TO edge_fleet_kiosk
    USING (kiosk_id = edge_fleet.calling_kiosk()) WITH CHECK (kiosk_id = edge_fleet.calling_kiosk());
ALTER TABLE edge_fleet.kiosks ENABLE ROW LEVEL SECURITY;
ALTER TABLE edge_fleet.kiosk_keys ENABLE ROW LEVEL SECURITY;
"""


def statements() -> list[str]:
    """The whole schema as statements, in order (the functions' bodies hold semicolons: split on blank lines)."""
    def split(text: str) -> list[str]:
        return [s.strip() for s in text.split(";") if s.strip()]

    functions = [s.strip().rstrip(";") for s in FUNCTIONS.split("\n\n") if s.strip()]
    return split(TABLES) + functions + split(GRANTS)
