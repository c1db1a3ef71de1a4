-- Caller verification: enrolled devices, enrolment codes, verifications
-- with their state machine, and the outbox of pushes, SMS and emails that
-- must survive a crash. State changes live in functions so that every
-- transition updates the row, appends its audit event and announces
-- itself (NOTIFY after commit) in one transaction.
--
-- Functions raise SQLSTATEs of class V0 that the API maps to statuses:
-- V0404 not found, V0409 conflict, V0422 validation, V0429 rate limited.

CREATE TABLE devices (
	msp_id uuid NOT NULL,
	id uuid NOT NULL,
	user_id uuid NOT NULL,
	platform text NOT NULL CHECK (platform IN ('ios', 'android')),
	name text,
	push_token text NOT NULL,
	public_key text NOT NULL,
	status text NOT NULL DEFAULT 'active'
	    CHECK (status IN ('active', 'revoked', 'unregistered')),
	created_at timestamptz NOT NULL DEFAULT now(),
	last_seen_at timestamptz,
	PRIMARY KEY (msp_id, id),
	FOREIGN KEY (msp_id, user_id) REFERENCES users (msp_id, id)
);

CREATE INDEX devices_user ON devices (msp_id, user_id);

-- Enrolment codes are found by their keyed hash alone: the enrolling
-- device has no other credential yet.
CREATE TABLE enrollments (
	msp_id uuid NOT NULL,
	id uuid NOT NULL,
	user_id uuid NOT NULL,
	code_hash text NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	created_by uuid,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, id),
	FOREIGN KEY (msp_id, user_id) REFERENCES users (msp_id, id)
);

CREATE UNIQUE INDEX enrollments_code ON enrollments (code_hash);

CREATE TABLE verifications (
	msp_id uuid NOT NULL,
	id uuid NOT NULL,
	user_id uuid NOT NULL,
	technician_id uuid NOT NULL,
	method text NOT NULL CHECK (method IN ('push', 'sms', 'email')),
	direction text NOT NULL
	    CHECK (direction IN ('verify_user', 'verify_technician')),
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending',
	    'sent', 'approved', 'denied', 'expired', 'canceled', 'failed')),
	match_code int,
	match_options int[],
	reason text,
	ticket jsonb,
	code_hash text,
	attempts_left int,
	created_at timestamptz NOT NULL DEFAULT now(),
	sent_at timestamptz,
	decided_at timestamptz,
	expires_at timestamptz NOT NULL,
	outcome text,
	decided_device uuid,
	note text,
	version int NOT NULL DEFAULT 1,
	PRIMARY KEY (msp_id, id),
	FOREIGN KEY (msp_id, user_id) REFERENCES users (msp_id, id)
);

-- Every change of a verification gets a new version, so a watcher can
-- tell a newer state from an older one whatever order news arrives in.
CREATE FUNCTION verification_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	NEW.version := OLD.version + 1;
	RETURN NEW;
END
$$;

CREATE TRIGGER verifications_version BEFORE UPDATE ON verifications
    FOR EACH ROW EXECUTE FUNCTION verification_bump();

CREATE INDEX verifications_open ON verifications (expires_at)
    WHERE status IN ('pending', 'sent');
CREATE INDEX verifications_user ON verifications (msp_id, user_id,
    created_at);
CREATE INDEX verifications_technician ON verifications (msp_id,
    technician_id, created_at);

-- Durable jobs. payload holds what the sender needs beyond what it can
-- join (for codes: the code sealed under the [secrets] key); it is
-- cleared once the job is done.
CREATE TABLE outbox (
	msp_id uuid NOT NULL,
	id uuid NOT NULL,
	kind text NOT NULL CHECK (kind IN ('push', 'sms', 'email')),
	template text NOT NULL,
	verification_id uuid,
	user_id uuid NOT NULL,
	device_id uuid,
	payload text,
	state text NOT NULL DEFAULT 'pending'
	    CHECK (state IN ('pending', 'done', 'failed')),
	attempts int NOT NULL DEFAULT 0,
	next_at timestamptz NOT NULL DEFAULT now(),
	lease_until timestamptz,
	give_up_at timestamptz NOT NULL,
	last_error text,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, id)
);

CREATE INDEX outbox_due ON outbox (next_at) WHERE state = 'pending';
CREATE INDEX outbox_verification ON outbox (msp_id, verification_id);

CREATE FUNCTION device_json(d devices) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', d.id, 'platform', d.platform,
	    'name', d.name, 'status', d.status,
	    'created_at', rfc3339(d.created_at),
	    'last_seen_at', rfc3339(d.last_seen_at))
$$;

CREATE FUNCTION verification_json(v verifications) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', v.id, 'user_id', v.user_id,
	    'technician_id', v.technician_id, 'method', v.method,
	    'direction', v.direction, 'status', v.status,
	    'match_code', v.match_code, 'reason', v.reason,
	    'ticket', v.ticket, 'created_at', rfc3339(v.created_at),
	    'sent_at', rfc3339(v.sent_at),
	    'decided_at', rfc3339(v.decided_at),
	    'expires_at', rfc3339(v.expires_at), 'outcome', v.outcome,
	    'attempts_left', v.attempts_left, 'note', v.note)
$$;

-- A prompt as the device sees it: never the match code itself.
CREATE FUNCTION prompt_json(v verifications) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', v.id, 'kind', v.direction,
	    'msp_name', m.name, 'technician_name', t.display_name,
	    'reason', v.reason, 'ticket', v.ticket,
	    'created_at', rfc3339(v.created_at),
	    'expires_at', rfc3339(v.expires_at),
	    'match_options', to_jsonb(v.match_options))
	FROM msps m, technicians t
	WHERE m.id = v.msp_id AND t.msp_id = v.msp_id
	    AND t.id = v.technician_id
$$;

-- Announce a verification's change to every process after commit:
-- "<msp id> <version> <verification JSON>".
CREATE FUNCTION verification_announce(v verifications) RETURNS void
LANGUAGE sql AS $$
	SELECT pg_notify('vouch_verification', v.msp_id || ' ' || v.version
	    || ' ' || verification_json(v)::text)
$$;

-- Lock a verification that must still be open: 404 when it is not the
-- MSP's, 409 when it has already ended or, unless it is being closed,
-- when its time ran out (the expiry timer may not have marked it yet).
CREATE FUNCTION verification_lock_open(p_msp uuid, p_id uuid,
    p_closing boolean) RETURNS verifications LANGUAGE plpgsql AS $$
DECLARE
	v verifications;
BEGIN
	SELECT * INTO v FROM verifications WHERE msp_id = p_msp AND id = p_id
	    FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such verification' USING ERRCODE = 'V0404';
	END IF;
	IF v.status NOT IN ('pending', 'sent') THEN
		RAISE EXCEPTION 'the verification is already %', v.status
		    USING ERRCODE = 'V0409';
	END IF;
	IF NOT p_closing AND v.expires_at <= clock_timestamp() THEN
		RAISE EXCEPTION 'the verification has expired'
		    USING ERRCODE = 'V0409';
	END IF;
	RETURN v;
END
$$;

-- Move an open verification to a final status, with its event.
CREATE FUNCTION verification_finish(p_msp uuid, p_id uuid, p_status text,
    p_outcome text, p_actor_type text, p_actor_id uuid, p_device uuid,
    p_note text) RETURNS verifications
LANGUAGE plpgsql AS $$
DECLARE
	v verifications;
BEGIN
	v := verification_lock_open(p_msp, p_id,
	    p_status IN ('expired', 'canceled', 'failed'));

	UPDATE verifications SET status = p_status, outcome = p_outcome,
	    decided_at = now(), decided_device = p_device,
	    note = coalesce(p_note, note)
	    WHERE msp_id = p_msp AND id = p_id RETURNING * INTO v;
	UPDATE outbox SET state = 'failed', payload = NULL,
	    last_error = 'verification ' || p_status
	    WHERE msp_id = p_msp AND verification_id = p_id
	    AND state = 'pending';

	PERFORM audit_append(p_msp, 'verification.' || p_status, p_actor_type,
	    p_actor_id, 'verification', p_id, jsonb_build_object(
	    'user_id', v.user_id, 'method', v.method, 'outcome', p_outcome,
	    'device_id', p_device, 'note', p_note));
	PERFORM verification_announce(v);
	RETURN v;
END
$$;

-- Create a verification and queue its deliveries. p_channel_ok is false
-- when the server has no way to send by this method; the verification
-- then fails at once, as it does for a push to a user without a device.
CREATE FUNCTION verification_create(p_msp uuid, p_id uuid, p_user uuid,
    p_technician uuid, p_method text, p_direction text, p_reason text,
    p_ticket jsonb, p_match int, p_options int[], p_code_hash text,
    p_attempts int, p_ttl_s int, p_payload text, p_channel_ok boolean,
    p_user_limit int, p_technician_limit int, p_window_s int,
    OUT result jsonb, OUT jobs uuid[])
LANGUAGE plpgsql AS $$
DECLARE
	u users;
	v verifications;
	recent int;
	outcome text;
BEGIN
	SELECT * INTO u FROM users WHERE msp_id = p_msp AND id = p_user;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such user' USING ERRCODE = 'V0404';
	END IF;
	IF u.status <> 'active' THEN
		RAISE EXCEPTION 'the user is disabled' USING ERRCODE = 'V0409';
	END IF;
	IF p_method = 'sms' AND u.phone IS NULL THEN
		RAISE EXCEPTION 'method: the user has no phone number'
		    USING ERRCODE = 'V0422';
	END IF;
	IF p_method = 'email' AND u.email IS NULL THEN
		RAISE EXCEPTION 'method: the user has no email address'
		    USING ERRCODE = 'V0422';
	END IF;

	SELECT count(*) INTO recent FROM verifications
	    WHERE msp_id = p_msp AND user_id = p_user
	    AND created_at > now() - make_interval(secs => p_window_s);
	IF recent >= p_user_limit THEN
		RAISE EXCEPTION 'too many verifications for this user'
		    USING ERRCODE = 'V0429';
	END IF;
	SELECT count(*) INTO recent FROM verifications
	    WHERE msp_id = p_msp AND technician_id = p_technician
	    AND created_at > now() - make_interval(secs => p_window_s);
	IF recent >= p_technician_limit THEN
		RAISE EXCEPTION 'too many verifications by this technician'
		    USING ERRCODE = 'V0429';
	END IF;

	INSERT INTO verifications (msp_id, id, user_id, technician_id,
	    method, direction, match_code, match_options, reason, ticket,
	    code_hash, attempts_left, expires_at)
	VALUES (p_msp, p_id, p_user, p_technician, p_method, p_direction,
	    p_match, p_options, p_reason, p_ticket, p_code_hash, p_attempts,
	    now() + make_interval(secs => p_ttl_s))
	RETURNING * INTO v;
	PERFORM audit_append(p_msp, 'verification.created', 'technician',
	    p_technician, 'verification', p_id, jsonb_build_object(
	    'user_id', p_user, 'method', p_method,
	    'direction', p_direction, 'reason', p_reason,
	    'ticket', p_ticket));

	IF p_method = 'push' THEN
		WITH j AS (
			INSERT INTO outbox (msp_id, id, kind, template,
			    verification_id, user_id, device_id, give_up_at)
			SELECT p_msp, gen_random_uuid(), 'push', 'prompt',
			    p_id, p_user, d.id, v.expires_at
			FROM devices d WHERE d.msp_id = p_msp
			    AND d.user_id = p_user AND d.status = 'active'
			RETURNING id)
		SELECT array_agg(id) INTO jobs FROM j;
	ELSIF p_channel_ok THEN
		INSERT INTO outbox (msp_id, id, kind, template,
		    verification_id, user_id, payload, give_up_at)
		VALUES (p_msp, gen_random_uuid(), p_method, 'code', p_id,
		    p_user, p_payload, v.expires_at)
		RETURNING ARRAY[id] INTO jobs;
	END IF;

	IF jobs IS NULL THEN
		outcome := CASE WHEN p_method = 'push' AND p_channel_ok
		    THEN 'no_active_device' ELSE 'delivery_failed' END;
		v := verification_finish(p_msp, p_id, 'failed', outcome,
		    'system', NULL, NULL, NULL);
	ELSE
		PERFORM verification_announce(v);
	END IF;
	result := verification_json(v);
END
$$;

-- A delivery of a verification left vouchd: the verification is sent.
CREATE FUNCTION verification_mark_sent(p_msp uuid, p_id uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	v verifications;
BEGIN
	UPDATE verifications SET status = 'sent', sent_at = now()
	    WHERE msp_id = p_msp AND id = p_id AND status = 'pending'
	    RETURNING * INTO v;
	IF FOUND THEN
		PERFORM audit_append(p_msp, 'verification.sent', 'system',
		    NULL, 'verification', p_id, jsonb_build_object(
		    'user_id', v.user_id, 'method', v.method));
		PERFORM verification_announce(v);
	END IF;
END
$$;

-- A wrong code: one attempt fewer, and the last one ends it.
CREATE FUNCTION verification_code_rejected(p_msp uuid, p_id uuid,
    p_technician uuid) RETURNS verifications
LANGUAGE plpgsql AS $$
DECLARE
	v verifications;
BEGIN
	v := verification_lock_open(p_msp, p_id, false);

	UPDATE verifications SET attempts_left = attempts_left - 1
	    WHERE msp_id = p_msp AND id = p_id RETURNING * INTO v;
	PERFORM audit_append(p_msp, 'verification.code_rejected',
	    'technician', p_technician, 'verification', p_id,
	    jsonb_build_object('user_id', v.user_id,
	    'attempts_left', v.attempts_left));
	IF v.attempts_left <= 0 THEN
		RETURN verification_finish(p_msp, p_id, 'denied',
		    'too_many_attempts', 'technician', p_technician, NULL,
		    NULL);
	END IF;
	PERFORM verification_announce(v);
	RETURN v;
END
$$;

-- Expire every open verification past its time; returns how many.
CREATE FUNCTION verification_expire_due() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT msp_id, id FROM verifications
	    WHERE status IN ('pending', 'sent') AND expires_at <= now()
	    ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED LOOP
		PERFORM verification_finish(r.msp_id, r.id, 'expired',
		    'timed_out', 'system', NULL, NULL, NULL);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

-- When no delivery of a verification is left pending and none was
-- sent, the verification has failed.
CREATE FUNCTION outbox_settle(p_msp uuid, p_verification uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF p_verification IS NULL OR EXISTS (SELECT 1 FROM outbox
	    WHERE msp_id = p_msp AND verification_id = p_verification
	    AND state IN ('pending', 'done')) THEN
		RETURN;
	END IF;
	IF EXISTS (SELECT 1 FROM verifications WHERE msp_id = p_msp
	    AND id = p_verification AND status = 'pending') THEN
		PERFORM verification_finish(p_msp, p_verification, 'failed',
		    'delivery_failed', 'system', NULL, NULL, NULL);
	END IF;
END
$$;

-- The outcome of one delivery attempt, as the sender reports it:
-- 'delivered', 'retry' (after p_delay_ms), 'token_dead' or 'failed'.
CREATE FUNCTION outbox_report(p_msp uuid, p_id uuid, p_outcome text,
    p_delay_ms int, p_error text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	j outbox;
	d devices;
BEGIN
	-- Lock in the order verification_finish() does (verification, then
	-- its jobs), so the two never wait on each other in a cycle. Both
	-- look-ups are by primary key, whatever the statistics say.
	SELECT * INTO j FROM outbox WHERE msp_id = p_msp AND id = p_id;
	IF j.verification_id IS NOT NULL THEN
		PERFORM 1 FROM verifications
		    WHERE msp_id = p_msp AND id = j.verification_id FOR UPDATE;
	END IF;
	SELECT * INTO j FROM outbox WHERE msp_id = p_msp AND id = p_id
	    FOR UPDATE;
	IF NOT FOUND OR j.state <> 'pending' THEN
		RETURN;
	END IF;

	IF p_outcome = 'delivered' THEN
		UPDATE outbox SET state = 'done', payload = NULL,
		    lease_until = NULL, last_error = NULL
		    WHERE msp_id = p_msp AND id = p_id;
		IF j.verification_id IS NOT NULL THEN
			PERFORM verification_mark_sent(p_msp,
			    j.verification_id);
		END IF;
		RETURN;
	END IF;

	IF p_outcome = 'retry' AND now() + make_interval(secs =>
	    p_delay_ms / 1000.0) < j.give_up_at THEN
		UPDATE outbox SET lease_until = NULL, last_error = p_error,
		    next_at = now() + make_interval(secs => p_delay_ms / 1000.0)
		    WHERE msp_id = p_msp AND id = p_id;
		RETURN;
	END IF;

	UPDATE outbox SET state = 'failed', payload = NULL,
	    lease_until = NULL, last_error = p_error
	    WHERE msp_id = p_msp AND id = p_id;
	IF p_outcome = 'token_dead' AND j.device_id IS NOT NULL THEN
		UPDATE devices SET status = 'unregistered'
		    WHERE msp_id = p_msp AND id = j.device_id
		    AND status = 'active' RETURNING * INTO d;
		IF FOUND THEN
			PERFORM audit_append(p_msp, 'device.unregistered',
			    'system', NULL, 'device', d.id,
			    jsonb_build_object('user_id', d.user_id,
			    'platform', d.platform, 'error', p_error));
		END IF;
	END IF;
	PERFORM outbox_settle(p_msp, j.verification_id);
END
$$;

-- Lease due jobs (or the given ones) to the calling process. A process
-- that dies holding a lease loses it when lease_until passes, and any
-- other process takes the job over.
CREATE FUNCTION outbox_claim(p_ids uuid[], p_limit int, p_lease_s int)
RETURNS SETOF outbox LANGUAGE sql AS $$
	UPDATE outbox o SET attempts = o.attempts + 1,
	    lease_until = now() + make_interval(secs => p_lease_s)
	WHERE (o.msp_id, o.id) IN (
		SELECT q.msp_id, q.id FROM outbox q
		WHERE q.state = 'pending' AND q.next_at <= now()
		    AND (q.lease_until IS NULL OR q.lease_until < now())
		    AND (p_ids IS NULL OR q.id = ANY (p_ids))
		ORDER BY q.next_at LIMIT p_limit
		FOR UPDATE SKIP LOCKED)
	RETURNING o.*
$$;

-- Devices are also found by id alone when renewing a token.
CREATE UNIQUE INDEX devices_id ON devices (id);

-- Create an enrolment code for a user, optionally queueing its delivery
-- (p_job is the outbox id the sealed code is bound to).
CREATE FUNCTION enrollment_create(p_msp uuid, p_user uuid,
    p_technician uuid, p_code_hash text, p_ttl_s int, p_send_via text,
    p_job uuid, p_payload text, OUT result jsonb, OUT jobs uuid[])
LANGUAGE plpgsql AS $$
DECLARE
	u users;
	e enrollments;
BEGIN
	SELECT * INTO u FROM users WHERE msp_id = p_msp AND id = p_user;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such user' USING ERRCODE = 'V0404';
	END IF;
	IF p_send_via = 'sms' AND u.phone IS NULL THEN
		RAISE EXCEPTION 'send_via: the user has no phone number'
		    USING ERRCODE = 'V0422';
	END IF;
	IF p_send_via = 'email' AND u.email IS NULL THEN
		RAISE EXCEPTION 'send_via: the user has no email address'
		    USING ERRCODE = 'V0422';
	END IF;

	INSERT INTO enrollments (msp_id, id, user_id, code_hash, expires_at,
	    created_by)
	VALUES (p_msp, gen_random_uuid(), p_user, p_code_hash,
	    now() + make_interval(secs => p_ttl_s), p_technician)
	RETURNING * INTO e;
	IF p_send_via IS NOT NULL THEN
		INSERT INTO outbox (msp_id, id, kind, template, user_id,
		    payload, give_up_at)
		VALUES (p_msp, p_job, p_send_via, 'enroll', p_user, p_payload,
		    e.expires_at);
		jobs := ARRAY[p_job];
	END IF;
	PERFORM audit_append(p_msp, 'enrollment.created', 'technician',
	    p_technician, 'user', p_user, jsonb_build_object(
	    'enrollment_id', e.id, 'send_via', p_send_via,
	    'expires_at', rfc3339(e.expires_at)));
	result := jsonb_build_object('expires_at', rfc3339(e.expires_at));
END
$$;

-- Enrol a device with a code: single use, unexpired. Every failure
-- looks the same to the caller.
CREATE FUNCTION device_enroll(p_code_hash text, p_platform text,
    p_push_token text, p_public_key text, p_name text)
RETURNS devices LANGUAGE plpgsql AS $$
DECLARE
	e enrollments;
	d devices;
BEGIN
	SELECT * INTO e FROM enrollments WHERE code_hash = p_code_hash
	    FOR UPDATE;
	IF NOT FOUND OR e.used_at IS NOT NULL OR e.expires_at <= now() THEN
		RAISE EXCEPTION 'the enrolment code is not valid'
		    USING ERRCODE = 'V0401';
	END IF;

	UPDATE enrollments SET used_at = now()
	    WHERE msp_id = e.msp_id AND id = e.id;
	INSERT INTO devices (msp_id, id, user_id, platform, name, push_token,
	    public_key, last_seen_at)
	VALUES (e.msp_id, gen_random_uuid(), e.user_id, p_platform, p_name,
	    p_push_token, p_public_key, now())
	RETURNING * INTO d;
	PERFORM audit_append(e.msp_id, 'device.enrolled', 'user', e.user_id,
	    'device', d.id, jsonb_build_object('user_id', e.user_id,
	    'platform', p_platform, 'name', p_name,
	    'enrollment_id', e.id));
	RETURN d;
END
$$;

-- Revoke a device; its token stops working with the next request.
CREATE FUNCTION device_revoke(p_msp uuid, p_id uuid, p_technician uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	d devices;
BEGIN
	UPDATE devices SET status = 'revoked'
	    WHERE msp_id = p_msp AND id = p_id AND status <> 'revoked'
	    RETURNING * INTO d;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such device' USING ERRCODE = 'V0404';
	END IF;
	PERFORM audit_append(p_msp, 'device.revoked', 'technician',
	    p_technician, 'device', p_id, jsonb_build_object(
	    'user_id', d.user_id, 'platform', d.platform));
END
$$;

-- A device's signed decision on a prompt of its user. The signature was
-- checked by the caller; this applies it: a wrong number denies.
CREATE FUNCTION verification_decide(p_msp uuid, p_id uuid, p_device uuid,
    p_result text, p_number int) RETURNS verifications
LANGUAGE plpgsql AS $$
DECLARE
	v verifications;
BEGIN
	SELECT v0.* INTO v FROM verifications v0, devices d
	    WHERE v0.msp_id = p_msp AND v0.id = p_id AND v0.method = 'push'
	    AND d.msp_id = p_msp AND d.id = p_device
	    AND d.user_id = v0.user_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such prompt' USING ERRCODE = 'V0404';
	END IF;

	IF p_result = 'denied' THEN
		RETURN verification_finish(p_msp, p_id, 'denied',
		    'denied_on_device', 'device', p_device, p_device, NULL);
	ELSIF p_number IS DISTINCT FROM v.match_code THEN
		RETURN verification_finish(p_msp, p_id, 'denied',
		    'number_mismatch', 'device', p_device, p_device, NULL);
	END IF;
	RETURN verification_finish(p_msp, p_id, 'approved',
	    'approved_on_device', 'device', p_device, p_device, NULL);
END
$$;
