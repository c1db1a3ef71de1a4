-- Self-service password reset and account unlock. A session starts from
-- the web page (for a typed login) or from the app (for the device's
-- user), proves who is there with a code by SMS or email or an approval
-- on an enrolled device, and then resets the password or unlocks the
-- account in the customer's directory.
--
-- Which account a login names: the login is matched against users.login
-- of every MSP, ignoring case, and must name exactly one active user
-- whose customer has a directory connection. Anything else (no match, a
-- login that two users share, under two customers or two MSPs, a user
-- without a directory) is an unknown login. A session is started for
-- unknown logins too, with the same answer and the same work, so the
-- answer never tells whether an account exists; such a session belongs
-- to the nil MSP, sends nothing and can never be verified.
--
-- The session token is stored as its SHA-256; the typed login only as a
-- keyed hash (for the per-login start limit), since people type
-- passwords into login fields. New passwords never reach the database.

CREATE TABLE selfservice_sessions (
	msp_id uuid NOT NULL,		-- the nil uuid for an unknown login
	id uuid NOT NULL,
	token_hash text NOT NULL,
	login_hash text NOT NULL,
	client_addr text,
	purpose text NOT NULL CHECK (purpose IN ('reset', 'unlock')),
	source text NOT NULL CHECK (source IN ('web', 'app')),
	user_id uuid,			-- NULL for an unknown login
	status text NOT NULL DEFAULT 'open'
	    CHECK (status IN ('open', 'verified', 'done', 'dead')),
	outcome text,
	factor text CHECK (factor IN ('push', 'sms', 'email', 'device')),
	code_hash text,
	code_expires_at timestamptz,
	attempts_left int NOT NULL,
	challenges int NOT NULL DEFAULT 0,
	prompt_id uuid,			-- the open push prompt of the session
	match_code int,
	match_options int[],
	prompt_at timestamptz,
	device_id uuid,
	busy_until timestamptz,		-- a directory change is under way
	created_at timestamptz NOT NULL DEFAULT now(),
	verified_at timestamptz,
	done_at timestamptz,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (msp_id, id)
);

-- Sessions are found by their token before the MSP is known.
CREATE UNIQUE INDEX selfservice_sessions_token
    ON selfservice_sessions (token_hash);
CREATE UNIQUE INDEX selfservice_sessions_prompt
    ON selfservice_sessions (msp_id, prompt_id) WHERE prompt_id IS NOT NULL;
CREATE INDEX selfservice_sessions_user ON selfservice_sessions (msp_id,
    user_id) WHERE status = 'open' AND prompt_id IS NOT NULL;
CREATE INDEX selfservice_sessions_login ON selfservice_sessions (login_hash,
    created_at);
CREATE INDEX selfservice_sessions_addr ON selfservice_sessions (client_addr,
    created_at);
CREATE INDEX selfservice_sessions_expiry ON selfservice_sessions
    (expires_at);

-- Logins are matched across tenants, ignoring case.
CREATE INDEX users_login_lower ON users (lower(login))
    WHERE login IS NOT NULL;

-- A self-service push names the session's prompt, which the app fetches.
ALTER TABLE outbox ADD COLUMN prompt_id uuid;

-- The session as its holder sees it. The MSP's name shows only once the
-- holder has proved who they are.
CREATE FUNCTION selfservice_json(s selfservice_sessions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('session_id', s.id, 'purpose', s.purpose,
	    'status', s.status,
	    'verified', s.status IN ('verified', 'done'),
	    'factor', s.factor, 'factors', CASE WHEN s.source = 'app'
	        THEN '["device"]'::jsonb
	        ELSE '["push", "sms", "email"]'::jsonb END,
	    'attempts_left', s.attempts_left,
	    'match_code', CASE WHEN s.status = 'open' AND s.factor = 'push'
	        THEN s.match_code END,
	    'code_expires_at', rfc3339(s.code_expires_at),
	    'outcome', s.outcome, 'expires_at', rfc3339(s.expires_at),
	    'msp_name', CASE WHEN s.status IN ('verified', 'done')
	        THEN (SELECT m.name FROM msps m WHERE m.id = s.msp_id) END)
$$;

-- A self-service push prompt as the device sees it.
CREATE FUNCTION selfservice_prompt_json(s selfservice_sessions)
RETURNS jsonb LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', s.prompt_id, 'kind', 'selfservice',
	    'purpose', s.purpose, 'msp_name', m.name,
	    'technician_name', NULL,
	    'reason', CASE s.purpose
	        WHEN 'reset' THEN 'Reset your password on the self-service page'
	        ELSE 'Unlock your account on the self-service page' END,
	    'ticket', NULL, 'created_at', rfc3339(s.prompt_at),
	    'expires_at', rfc3339(least(s.code_expires_at, s.expires_at)),
	    'match_options', to_jsonb(s.match_options))
	FROM msps m WHERE m.id = s.msp_id
$$;

-- A session taken for a directory change, found again to record the
-- outcome even if it expired while the directory worked.
CREATE FUNCTION selfservice_taken(p_id uuid, p_token_hash text)
RETURNS selfservice_sessions LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	SELECT * INTO s FROM selfservice_sessions
	    WHERE token_hash = p_token_hash AND id = p_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such session' USING ERRCODE = 'V0404';
	END IF;
	RETURN s;
END
$$;

-- The session a token opens, when it is the one named in the path.
-- Dead and finished sessions still open (their state can be read);
-- expired ones do not.
CREATE FUNCTION selfservice_find(p_id uuid, p_token_hash text,
    p_lock boolean) RETURNS selfservice_sessions
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	IF p_lock THEN
		SELECT * INTO s FROM selfservice_sessions
		    WHERE token_hash = p_token_hash FOR UPDATE;
	ELSE
		SELECT * INTO s FROM selfservice_sessions
		    WHERE token_hash = p_token_hash;
	END IF;
	IF NOT FOUND OR s.expires_at <= now() THEN
		RAISE EXCEPTION 'the session token is not valid or has expired'
		    USING ERRCODE = 'V0401';
	END IF;
	IF s.id <> p_id THEN
		RAISE EXCEPTION 'no such session' USING ERRCODE = 'V0404';
	END IF;
	RETURN s;
END
$$;

-- Start a session for a typed login. Starts are limited per login and
-- per client address (counted over the last minute, across processes).
-- Known and unknown logins take the same path, do the same work and get
-- the same answer; the known login's MSP records the start afterwards
-- (selfservice_started), once the answer has gone.
CREATE FUNCTION selfservice_start(p_id uuid, p_token_hash text,
    p_login text, p_login_hash text, p_addr text, p_purpose text,
    p_attempts int, p_ttl_s int, p_login_limit int, p_addr_limit int)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	nil uuid := '00000000-0000-0000-0000-000000000000';
	matches int;
	has_directory boolean;
	v_msp uuid;
	v_user uuid;
	recent int;
	s selfservice_sessions;
BEGIN
	-- Sessions long over go, a few per start.
	DELETE FROM selfservice_sessions WHERE (msp_id, id) IN (
	    SELECT o.msp_id, o.id FROM selfservice_sessions o
	    WHERE o.expires_at < now() - interval '1 day' LIMIT 20);

	SELECT count(*) INTO recent FROM selfservice_sessions
	    WHERE login_hash = p_login_hash
	    AND created_at > now() - interval '1 minute';
	IF recent >= p_login_limit THEN
		RAISE EXCEPTION 'too many attempts for this login; wait a '
		    'minute' USING ERRCODE = 'V0429';
	END IF;
	SELECT count(*) INTO recent FROM selfservice_sessions
	    WHERE client_addr = p_addr
	    AND created_at > now() - interval '1 minute';
	IF recent >= p_addr_limit THEN
		RAISE EXCEPTION 'too many attempts from this address; wait a '
		    'minute' USING ERRCODE = 'V0429';
	END IF;

	SELECT count(*), (array_agg(u.msp_id))[1], (array_agg(u.id))[1]
	    INTO matches, v_msp, v_user
	    FROM users u WHERE lower(u.login) = lower(p_login)
	    AND u.login IS NOT NULL AND u.status = 'active';
	-- Asked for every login, so unknown ones take as long.
	SELECT EXISTS (SELECT 1 FROM users u JOIN directories d
	    ON d.msp_id = u.msp_id AND d.customer_id = u.customer_id
	    WHERE u.msp_id = v_msp AND u.id = v_user
	    AND NOT u.directory_disabled) INTO has_directory;
	IF matches <> 1 OR NOT has_directory THEN
		v_msp := nil;
		v_user := NULL;
	END IF;

	INSERT INTO selfservice_sessions (msp_id, id, token_hash, login_hash,
	    client_addr, purpose, source, user_id, attempts_left, expires_at)
	VALUES (v_msp, p_id, p_token_hash, p_login_hash, p_addr, p_purpose,
	    'web', v_user, p_attempts, now() + make_interval(secs => p_ttl_s))
	RETURNING * INTO s;
	RETURN jsonb_build_object('session_id', s.id,
	    'expires_at', rfc3339(s.expires_at),
	    'factors', '["push", "sms", "email"]'::jsonb,
	    'purpose', s.purpose);
END
$$;

-- Record a web start in the trail of the login's MSP; nothing for an
-- unknown login. Called after the start was answered, so that how long
-- the answer took never tells whether the login exists.
CREATE FUNCTION selfservice_started(p_token_hash text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	SELECT * INTO s FROM selfservice_sessions
	    WHERE token_hash = p_token_hash;
	IF FOUND AND s.user_id IS NOT NULL THEN
		PERFORM audit_append(s.msp_id, 'selfservice.started',
		    'selfservice', s.id, 'user', s.user_id, jsonb_build_object(
		    'session_id', s.id, 'purpose', s.purpose, 'source', 'web',
		    'address', s.client_addr));
	END IF;
END
$$;

-- Start an already verified session from the app: the device's
-- signature proved who is there.
CREATE FUNCTION selfservice_device_start(p_msp uuid, p_device uuid,
    p_id uuid, p_token_hash text, p_purpose text, p_ttl_s int)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	u users;
	s selfservice_sessions;
BEGIN
	SELECT us.* INTO u FROM users us JOIN devices d
	    ON d.msp_id = us.msp_id AND d.user_id = us.id
	    WHERE d.msp_id = p_msp AND d.id = p_device
	    AND d.status <> 'revoked';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'this device is not enrolled or was revoked'
		    USING ERRCODE = 'V0401';
	END IF;
	IF u.status <> 'active' OR u.directory_disabled THEN
		RAISE EXCEPTION 'the account is disabled'
		    USING ERRCODE = 'V0409';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM directories d WHERE d.msp_id = p_msp
	    AND d.customer_id = u.customer_id) THEN
		RAISE EXCEPTION 'this account has no directory connection'
		    USING ERRCODE = 'V0409';
	END IF;

	INSERT INTO selfservice_sessions (msp_id, id, token_hash, login_hash,
	    purpose, source, user_id, status, factor, attempts_left,
	    device_id, verified_at, expires_at)
	VALUES (p_msp, p_id, p_token_hash, 'device:' || p_device, p_purpose,
	    'app', u.id, 'verified', 'device', 0, p_device, now(),
	    now() + make_interval(secs => p_ttl_s))
	RETURNING * INTO s;
	PERFORM audit_append(p_msp, 'selfservice.started', 'device',
	    p_device, 'user', u.id, jsonb_build_object('session_id', p_id,
	    'purpose', p_purpose, 'source', 'app'));
	PERFORM audit_append(p_msp, 'selfservice.verified', 'device',
	    p_device, 'user', u.id, jsonb_build_object('session_id', p_id,
	    'factor', 'device', 'device_id', p_device));
	RETURN selfservice_json(s);
END
$$;

-- Take a new code or push prompt for a session. The code's hash and
-- the match numbers are drawn by the caller for every session, known or
-- not, and recorded the same way; what is sent is queued afterwards
-- (selfservice_deliver), once the answer has gone, so its timing never
-- tells whether the login exists. Returns the session; error is set
-- (and nothing changed) when the session cannot take a challenge.
CREATE FUNCTION selfservice_challenge(p_id uuid, p_token_hash text,
    p_factor text, p_code_hash text, p_ttl_s int, p_match int,
    p_options int[], p_prompt uuid, p_limit int,
    OUT result jsonb, OUT error text)
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
	push boolean := p_factor = 'push';
BEGIN
	s := selfservice_find(p_id, p_token_hash, true);
	IF s.status = 'dead' THEN
		error := coalesce(s.outcome, 'ended');
		RETURN;
	ELSIF s.status <> 'open' THEN
		error := 'verified';
		RETURN;
	ELSIF s.challenges >= p_limit THEN
		error := 'limit';
		RETURN;
	END IF;

	UPDATE selfservice_sessions SET factor = p_factor,
	    challenges = challenges + 1,
	    code_hash = CASE WHEN push THEN NULL ELSE p_code_hash END,
	    code_expires_at = least(expires_at,
	        now() + make_interval(secs => p_ttl_s)),
	    prompt_id = CASE WHEN push THEN p_prompt END,
	    match_code = CASE WHEN push THEN p_match END,
	    match_options = CASE WHEN push THEN p_options END,
	    prompt_at = CASE WHEN push THEN now() END
	    WHERE msp_id = s.msp_id AND id = s.id RETURNING * INTO s;
	result := selfservice_json(s);
END
$$;

-- Queue what a challenge sends: a push to every active device of a
-- known user, or the code (sealed, bound to p_job) by SMS or email when
-- the user has a number or an address and the server the channel. A
-- challenge that a newer one replaced sends nothing. Returns the jobs.
CREATE FUNCTION selfservice_deliver(p_token_hash text, p_code_hash text,
    p_prompt uuid, p_job uuid, p_payload text, p_sms_ok boolean,
    p_email_ok boolean) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
	u users;
	jobs uuid[];
BEGIN
	SELECT * INTO s FROM selfservice_sessions
	    WHERE token_hash = p_token_hash FOR UPDATE;
	IF NOT FOUND OR s.user_id IS NULL OR s.status <> 'open'
	    OR (s.factor = 'push' AND s.prompt_id IS DISTINCT FROM p_prompt)
	    OR (s.factor <> 'push'
	        AND s.code_hash IS DISTINCT FROM p_code_hash) THEN
		RETURN NULL;
	END IF;

	SELECT * INTO u FROM users WHERE msp_id = s.msp_id AND id = s.user_id;
	IF s.factor = 'push' THEN
		WITH j AS (
			INSERT INTO outbox (msp_id, id, kind, template, user_id,
			    device_id, prompt_id, payload, give_up_at)
			SELECT s.msp_id, gen_random_uuid(), 'push',
			    'selfservice', s.user_id, d.id, s.prompt_id,
			    CASE s.purpose WHEN 'reset' THEN 'Did you ask to '
			    || 'reset your password? Open vouch and pick the '
			    || 'number the page shows. Deny if it was not you.'
			    ELSE 'Did you ask to unlock your account? Open '
			    || 'vouch and pick the number the page shows. Deny '
			    || 'if it was not you.' END, s.code_expires_at
			FROM devices d WHERE d.msp_id = s.msp_id
			    AND d.user_id = s.user_id AND d.status = 'active'
			RETURNING id)
		SELECT array_agg(id) INTO jobs FROM j;
	ELSIF (s.factor = 'sms' AND p_sms_ok AND u.phone IS NOT NULL) OR
	    (s.factor = 'email' AND p_email_ok AND u.email IS NOT NULL) THEN
		INSERT INTO outbox (msp_id, id, kind, template, user_id,
		    payload, give_up_at)
		VALUES (s.msp_id, p_job, s.factor, 'selfservice_code',
		    s.user_id, p_payload, s.code_expires_at);
		jobs := ARRAY[p_job];
	END IF;
	PERFORM audit_append(s.msp_id, 'selfservice.challenged',
	    'selfservice', s.id, 'user', s.user_id, jsonb_build_object(
	    'session_id', s.id, 'factor', s.factor,
	    'sent', jobs IS NOT NULL));
	RETURN jobs;
END
$$;

-- A typed code was checked by the caller against the hash it read
-- (p_checked); apply the result. A right code verifies a known user's
-- open session; a wrong one costs an attempt, and the last one ends the
-- session. Returns {verified} or {error, attempts_left}.
CREATE FUNCTION selfservice_verify(p_id uuid, p_token_hash text,
    p_checked text, p_ok boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	s := selfservice_find(p_id, p_token_hash, true);
	IF s.status = 'dead' THEN
		RETURN jsonb_build_object('error', coalesce(s.outcome, 'ended'),
		    'attempts_left', s.attempts_left);
	ELSIF s.status <> 'open' THEN
		RETURN jsonb_build_object('verified', true);
	ELSIF s.code_hash IS NULL THEN
		RETURN jsonb_build_object('error', 'no_code');
	ELSIF s.code_expires_at <= now() THEN
		RETURN jsonb_build_object('error', 'code_expired',
		    'attempts_left', s.attempts_left);
	END IF;

	IF p_ok AND s.user_id IS NOT NULL AND s.code_hash = p_checked
	    AND s.attempts_left > 0 THEN
		UPDATE selfservice_sessions SET status = 'verified',
		    verified_at = now(), code_hash = NULL
		    WHERE msp_id = s.msp_id AND id = s.id;
		PERFORM audit_append(s.msp_id, 'selfservice.verified',
		    'selfservice', s.id, 'user', s.user_id,
		    jsonb_build_object('session_id', s.id,
		    'factor', s.factor));
		RETURN jsonb_build_object('verified', true);
	END IF;

	UPDATE selfservice_sessions SET attempts_left = attempts_left - 1,
	    status = CASE WHEN attempts_left <= 1 THEN 'dead' ELSE status END,
	    outcome = CASE WHEN attempts_left <= 1 THEN 'too_many_attempts'
	        ELSE outcome END,
	    code_hash = CASE WHEN attempts_left <= 1 THEN NULL
	        ELSE code_hash END
	    WHERE msp_id = s.msp_id AND id = s.id RETURNING * INTO s;
	IF s.user_id IS NOT NULL THEN
		PERFORM audit_append(s.msp_id, CASE WHEN s.status = 'dead'
		    THEN 'selfservice.failed' ELSE 'selfservice.code_rejected'
		    END, 'selfservice', s.id, 'user', s.user_id,
		    jsonb_build_object('session_id', s.id,
		    'attempts_left', s.attempts_left, 'outcome', s.outcome));
	END IF;
	RETURN jsonb_build_object('error', CASE WHEN s.status = 'dead'
	    THEN 'too_many_attempts' ELSE 'wrong_code' END,
	    'attempts_left', s.attempts_left);
END
$$;

-- A device's signed decision on a self-service prompt of its user (the
-- signature was checked by the caller). A denial or a wrong number ends
-- the session; the right number verifies it.
CREATE FUNCTION selfservice_decide(p_msp uuid, p_prompt uuid,
    p_device uuid, p_result text, p_number int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
	v_outcome text;
BEGIN
	SELECT s0.* INTO s FROM selfservice_sessions s0, devices d
	    WHERE s0.msp_id = p_msp AND s0.prompt_id = p_prompt
	    AND d.msp_id = p_msp AND d.id = p_device
	    AND d.user_id = s0.user_id
	    FOR UPDATE OF s0;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such prompt' USING ERRCODE = 'V0404';
	END IF;
	IF s.status <> 'open' OR s.factor <> 'push'
	    OR s.code_expires_at <= now() OR s.expires_at <= now() THEN
		RAISE EXCEPTION 'the prompt is already closed'
		    USING ERRCODE = 'V0409';
	END IF;

	IF p_result = 'approved' AND p_number IS NOT DISTINCT FROM s.match_code
	    THEN
		UPDATE selfservice_sessions SET status = 'verified',
		    verified_at = now(), device_id = p_device
		    WHERE msp_id = s.msp_id AND id = s.id;
		PERFORM audit_append(p_msp, 'selfservice.verified', 'device',
		    p_device, 'user', s.user_id, jsonb_build_object(
		    'session_id', s.id, 'factor', 'push',
		    'device_id', p_device));
		RETURN 'approved';
	END IF;

	v_outcome := CASE WHEN p_result = 'denied' THEN 'denied_on_device'
	    ELSE 'number_mismatch' END;
	UPDATE selfservice_sessions SET status = 'dead', outcome = v_outcome,
	    device_id = p_device WHERE msp_id = s.msp_id AND id = s.id;
	PERFORM audit_append(p_msp, 'selfservice.failed', 'device', p_device,
	    'user', s.user_id, jsonb_build_object('session_id', s.id,
	    'outcome', v_outcome, 'device_id', p_device));
	RETURN 'denied';
END
$$;

-- A device decides one of its user's prompts: a self-service prompt or
-- a verification. Returns the new status ('approved' or 'denied').
CREATE FUNCTION prompt_decide(p_msp uuid, p_id uuid, p_device uuid,
    p_result text, p_number int) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM selfservice_sessions
	    WHERE msp_id = p_msp AND prompt_id = p_id) THEN
		RETURN selfservice_decide(p_msp, p_id, p_device, p_result,
		    p_number);
	END IF;
	RETURN (verification_decide(p_msp, p_id, p_device, p_result,
	    p_number)).status;
END
$$;

-- Take a verified session for a directory change (p_action 'reset' or
-- 'unlock') and hand back what the change needs: the directory settings
-- (bind password sealed with the customer id) and the account's login
-- and name. With p_take the session stays busy for a minute or until
-- released, so two requests never change the directory at once; without
-- it the settings are only read (to show the password rules). error is
-- set when the session cannot do it.
CREATE FUNCTION selfservice_claim(p_id uuid, p_token_hash text,
    p_action text, p_take boolean, OUT error text, OUT customer_id uuid,
    OUT url text, OUT bind_dn text, OUT bind_password text,
    OUT base_dn text, OUT ca_file text, OUT login_attribute text,
    OUT login text, OUT display_name text)
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	s := selfservice_find(p_id, p_token_hash, p_take);
	IF s.status = 'done' AND p_take THEN
		error := 'done';
		RETURN;
	ELSIF s.status NOT IN ('verified', 'done') THEN
		error := 'not_verified';
		RETURN;
	ELSIF p_take AND s.purpose <> p_action THEN
		error := 'purpose';
		RETURN;
	ELSIF p_take AND s.busy_until > now() THEN
		error := 'busy';
		RETURN;
	END IF;

	SELECT u.customer_id, d.url, d.bind_dn, d.bind_password, d.base_dn,
	    d.ca_file, d.login_attribute, u.login, u.display_name
	    INTO customer_id, url, bind_dn, bind_password, base_dn, ca_file,
	    login_attribute, login, display_name
	    FROM users u JOIN directories d ON d.msp_id = u.msp_id
	    AND d.customer_id = u.customer_id
	    WHERE u.msp_id = s.msp_id AND u.id = s.user_id
	    AND u.status = 'active' AND u.login IS NOT NULL;
	IF NOT FOUND THEN
		error := 'no_directory';
		RETURN;
	END IF;
	IF p_take THEN
		UPDATE selfservice_sessions
		    SET busy_until = now() + interval '1 minute'
		    WHERE selfservice_sessions.msp_id = s.msp_id
		    AND selfservice_sessions.id = s.id;
	END IF;
END
$$;

-- The directory refused or failed: the session may try again. A refused
-- password is recorded with the rule it broke (never the password).
CREATE FUNCTION selfservice_release(p_id uuid, p_token_hash text,
    p_rule text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
BEGIN
	s := selfservice_taken(p_id, p_token_hash);
	UPDATE selfservice_sessions SET busy_until = NULL
	    WHERE msp_id = s.msp_id AND id = s.id;
	IF p_rule IS NOT NULL THEN
		PERFORM audit_append(s.msp_id, 'selfservice.password_rejected',
		    'selfservice', s.id, 'user', s.user_id,
		    jsonb_build_object('session_id', s.id, 'rule', p_rule));
	END IF;
END
$$;

-- The directory changed: end the session, record what was done, and
-- tell the user (push to their devices, else email, else SMS) so that a
-- change they did not make does not go unnoticed. Returns the jobs.
CREATE FUNCTION selfservice_finish(p_id uuid, p_token_hash text,
    p_reset boolean, p_unlock boolean, p_sms_ok boolean,
    p_email_ok boolean) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
	s selfservice_sessions;
	u users;
	v_template text;
	v_body text;
	v_channel text;
	jobs uuid[];
	job uuid := gen_random_uuid();
	actor_type text;
	actor uuid;
BEGIN
	s := selfservice_taken(p_id, p_token_hash);
	UPDATE selfservice_sessions SET status = 'done', done_at = now(),
	    busy_until = NULL, outcome = CASE WHEN p_reset THEN
	    'password_reset' ELSE 'unlocked' END
	    WHERE msp_id = s.msp_id AND id = s.id;
	SELECT * INTO u FROM users WHERE msp_id = s.msp_id AND id = s.user_id;
	actor_type := CASE WHEN s.source = 'app' THEN 'device'
	    ELSE 'selfservice' END;
	actor := CASE WHEN s.source = 'app' THEN s.device_id ELSE s.id END;

	IF p_reset THEN
		PERFORM audit_append(s.msp_id, 'password.reset', actor_type,
		    actor, 'user', s.user_id, jsonb_build_object(
		    'session_id', s.id, 'source', 'selfservice',
		    'factor', s.factor, 'unlocked', p_unlock));
	END IF;
	IF p_unlock THEN
		UPDATE users SET locked_out = false
		    WHERE msp_id = s.msp_id AND id = s.user_id;
		PERFORM audit_append(s.msp_id, 'account.unlocked', actor_type,
		    actor, 'user', s.user_id, jsonb_build_object(
		    'session_id', s.id, 'source', 'selfservice',
		    'factor', s.factor));
	END IF;

	v_template := CASE WHEN p_reset THEN 'password_reset'
	    ELSE 'account_unlocked' END;
	v_body := CASE WHEN p_reset THEN 'Your password was just reset'
	    ELSE 'Your account was just unlocked' END
	    || ' through self-service (' || to_char(now() AT TIME ZONE 'UTC',
	    'YYYY-MM-DD HH24:MI') || ' UTC). If this wasn''t you, call '
	    || 'your helpdesk at once.';
	v_channel := CASE
	    WHEN EXISTS (SELECT 1 FROM devices d WHERE d.msp_id = s.msp_id
	        AND d.user_id = s.user_id AND d.status = 'active') THEN 'push'
	    WHEN p_email_ok AND u.email IS NOT NULL THEN 'email'
	    WHEN p_sms_ok AND u.phone IS NOT NULL THEN 'sms' END;

	IF v_channel = 'push' THEN
		WITH j AS (
			INSERT INTO outbox (msp_id, id, kind, template,
			    user_id, device_id, payload, give_up_at)
			SELECT s.msp_id, gen_random_uuid(), 'push', v_template,
			    s.user_id, d.id, v_body, now() + interval '1 day'
			FROM devices d WHERE d.msp_id = s.msp_id
			    AND d.user_id = s.user_id AND d.status = 'active'
			RETURNING id)
		SELECT array_agg(id) INTO jobs FROM j;
	ELSIF v_channel IS NOT NULL THEN
		INSERT INTO outbox (msp_id, id, kind, template, user_id,
		    payload, give_up_at)
		VALUES (s.msp_id, job, v_channel, v_template, s.user_id, v_body,
		    now() + interval '1 day');
		jobs := ARRAY[job];
	END IF;
	RETURN jobs;
END
$$;
