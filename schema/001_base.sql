-- The base schema: MSPs (tenants), their technicians, customers and end
-- users, and the hash-chained audit trail. Every tenant table carries
-- msp_id first in its primary key so it can be distributed by it.

CREATE TABLE msps (
	id uuid PRIMARY KEY,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE technicians (
	msp_id uuid NOT NULL REFERENCES msps (id),
	id uuid NOT NULL,
	display_name text NOT NULL,
	email text,
	role text NOT NULL CHECK (role IN ('admin', 'technician')),
	key_hash bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz,
	PRIMARY KEY (msp_id, id)
);

-- API keys are looked up by hash before the MSP is known.
CREATE UNIQUE INDEX technicians_key_hash ON technicians (key_hash);

CREATE TABLE customers (
	msp_id uuid NOT NULL REFERENCES msps (id),
	id uuid NOT NULL,
	name text NOT NULL,
	external_ref text,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, id)
);

CREATE TABLE users (
	msp_id uuid NOT NULL,
	id uuid NOT NULL,
	customer_id uuid NOT NULL,
	display_name text NOT NULL,
	email text,
	phone text,
	login text,
	status text NOT NULL DEFAULT 'active'
	    CHECK (status IN ('active', 'disabled')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, id),
	FOREIGN KEY (msp_id, customer_id) REFERENCES customers (msp_id, id)
);

CREATE INDEX users_customer ON users (msp_id, customer_id);

-- Times in API answers: RFC 3339 in UTC with microseconds. The JSON
-- shapes below are STABLE like the to_char() they rest on, which lets
-- PostgreSQL inline them into the queries that use them.
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The JSON shapes of API answers, kept next to the tables they render.
CREATE FUNCTION customer_json(c customers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', c.id, 'name', c.name,
	    'external_ref', c.external_ref,
	    'created_at', rfc3339(c.created_at))
$$;

CREATE FUNCTION user_json(u users) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', u.id, 'customer_id', u.customer_id,
	    'display_name', u.display_name, 'email', u.email,
	    'phone', u.phone, 'login', u.login, 'status', u.status,
	    'created_at', rfc3339(u.created_at),
	    'updated_at', rfc3339(u.updated_at))
$$;

CREATE FUNCTION technician_json(t technicians) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', t.id, 'display_name', t.display_name,
	    'email', t.email, 'role', t.role,
	    'created_at', rfc3339(t.created_at),
	    'revoked_at', rfc3339(t.revoked_at))
$$;

-- The audit trail: per MSP, gapless sequence numbers, each event holding
-- the hash of its predecessor. audit_heads holds the newest seq and hash
-- of each chain, so appends serialise on one row per MSP and a deleted
-- tail is noticed.
CREATE TABLE events (
	msp_id uuid NOT NULL,
	seq bigint NOT NULL,
	id uuid NOT NULL,
	type text NOT NULL,
	at timestamptz NOT NULL,
	actor_type text NOT NULL,
	actor_id uuid,
	subject_type text NOT NULL,
	subject_id uuid,
	data jsonb NOT NULL DEFAULT '{}',
	prev_hash text NOT NULL,
	hash text NOT NULL,
	PRIMARY KEY (msp_id, seq)
);

CREATE INDEX events_subject ON events (msp_id, subject_id, seq);
CREATE INDEX events_type ON events (msp_id, type, seq);

CREATE TABLE audit_heads (
	msp_id uuid PRIMARY KEY,
	last_seq bigint NOT NULL DEFAULT 0,
	last_hash text NOT NULL DEFAULT repeat('0', 64)
);

-- The canonical encoding hashed for one event: a JSON array of every
-- field, rendered by jsonb so that key order and spacing are fixed.
CREATE FUNCTION audit_hash(e events) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT encode(sha256(convert_to(jsonb_build_array(
	    e.prev_hash, e.msp_id, e.seq, e.id, e.type,
	    rfc3339(e.at),
	    e.actor_type, e.actor_id, e.subject_type, e.subject_id,
	    e.data)::text, 'UTF8')), 'hex')
$$;

-- Append one event to an MSP's chain and return its seq. Runs inside the
-- caller's transaction, so the event commits with the change it records.
CREATE FUNCTION audit_append(p_msp uuid, p_type text, p_actor_type text,
    p_actor_id uuid, p_subject_type text, p_subject_id uuid, p_data jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	head audit_heads;
	e events;
BEGIN
	INSERT INTO audit_heads (msp_id) VALUES (p_msp)
	    ON CONFLICT (msp_id) DO NOTHING;
	SELECT * INTO head FROM audit_heads WHERE msp_id = p_msp FOR UPDATE;

	e.msp_id := p_msp;
	e.seq := head.last_seq + 1;
	e.id := gen_random_uuid();
	e.type := p_type;
	e.at := date_trunc('microseconds', clock_timestamp());
	e.actor_type := p_actor_type;
	e.actor_id := p_actor_id;
	e.subject_type := p_subject_type;
	e.subject_id := p_subject_id;
	e.data := coalesce(p_data, '{}'::jsonb);
	e.prev_hash := head.last_hash;
	e.hash := audit_hash(e);

	INSERT INTO events VALUES (e.*);
	UPDATE audit_heads SET last_seq = e.seq, last_hash = e.hash
	    WHERE msp_id = p_msp;
	RETURN e.seq;
END
$$;

-- Walk an MSP's chain in order and return the first seq that does not
-- check out (a changed field, a gap, a wrong link, a missing tail), or
-- NULL with the last seq when the chain is intact.
CREATE FUNCTION audit_verify(p_msp uuid, OUT intact boolean,
    OUT last_seq bigint, OUT broken_at bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	e events;
	expect_seq bigint := 1;
	expect_prev text := repeat('0', 64);
	head audit_heads;
BEGIN
	intact := true;
	last_seq := 0;
	FOR e IN SELECT * FROM events WHERE msp_id = p_msp ORDER BY seq LOOP
		IF e.seq <> expect_seq OR e.prev_hash <> expect_prev
		    OR e.hash <> audit_hash(e) THEN
			intact := false;
			broken_at := e.seq;
			RETURN;
		END IF;
		last_seq := e.seq;
		expect_seq := e.seq + 1;
		expect_prev := e.hash;
	END LOOP;

	SELECT * INTO head FROM audit_heads WHERE msp_id = p_msp;
	IF FOUND AND (head.last_seq <> last_seq
	    OR head.last_hash <> expect_prev) THEN
		intact := false;
		broken_at := last_seq + 1;
	END IF;
END
$$;

CREATE FUNCTION event_json(e events) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('seq', e.seq, 'id', e.id, 'type', e.type,
	    'at', rfc3339(e.at),
	    'actor', jsonb_build_object('type', e.actor_type, 'id', e.actor_id),
	    'subject', jsonb_build_object('type', e.subject_type,
	        'id', e.subject_id),
	    'data', e.data, 'prev_hash', e.prev_hash, 'hash', e.hash)
$$;
