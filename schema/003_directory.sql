-- Customer directories (Active Directory over LDAP), what sync learns of
-- each user's account, alert policies, and the record of alerts sent so
-- that each fires once per password (or per lockout) across restarts and
-- processes.

CREATE TABLE directories (
	msp_id uuid NOT NULL,
	customer_id uuid NOT NULL,
	kind text NOT NULL DEFAULT 'active_directory'
	    CHECK (kind = 'active_directory'),
	url text NOT NULL,
	bind_dn text NOT NULL,
	bind_password text NOT NULL,	-- sealed under the [secrets] key
	base_dn text NOT NULL,
	ca_file text,
	login_attribute text NOT NULL DEFAULT 'userPrincipalName'
	    CHECK (login_attribute IN ('userPrincipalName', 'sAMAccountName')),
	sync_interval int NOT NULL DEFAULT 300,
	next_sync_at timestamptz NOT NULL DEFAULT now(),
	full_sync boolean NOT NULL DEFAULT true,
	lease_until timestamptz,
	claimed_at timestamptz,		-- when the current lease was taken
	last_sync_at timestamptz,
	last_full_sync_at timestamptz,
	last_error text,
	failures int NOT NULL DEFAULT 0,
	last_usn bigint NOT NULL DEFAULT 0,
	users_seen int NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, customer_id),
	FOREIGN KEY (msp_id, customer_id) REFERENCES customers (msp_id, id)
);

CREATE INDEX directories_due ON directories (next_sync_at);

CREATE TABLE alert_policies (
	msp_id uuid NOT NULL,
	customer_id uuid NOT NULL,
	expiry_days int[] NOT NULL DEFAULT '{14,7,3,1}',
	channels text[] NOT NULL DEFAULT '{push,sms,email}',
	on_expired boolean NOT NULL DEFAULT true,
	on_lockout boolean NOT NULL DEFAULT true,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, customer_id),
	FOREIGN KEY (msp_id, customer_id) REFERENCES customers (msp_id, id)
);

ALTER TABLE users
	ADD COLUMN directory_guid uuid,
	ADD COLUMN directory_dn text,
	ADD COLUMN pwd_last_set bigint,
	ADD COLUMN password_expires_at timestamptz,
	ADD COLUMN locked_out boolean NOT NULL DEFAULT false,
	ADD COLUMN lockout_time bigint NOT NULL DEFAULT 0,
	ADD COLUMN directory_disabled boolean NOT NULL DEFAULT false,
	ADD COLUMN synced_at timestamptz;

CREATE UNIQUE INDEX users_directory_guid ON users (msp_id, customer_id,
    directory_guid) WHERE directory_guid IS NOT NULL;

-- One row per alert that fired: the key is the password (pwd_last_set)
-- for expiry alerts and the lockout (lockout_time) for lockout alerts.
CREATE TABLE alerts_sent (
	msp_id uuid NOT NULL,
	user_id uuid NOT NULL,
	kind text NOT NULL,
	threshold int NOT NULL,
	key bigint NOT NULL,
	delivered boolean NOT NULL,
	sent_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msp_id, user_id, kind, threshold, key)
);

CREATE FUNCTION directory_json(d directories) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('customer_id', d.customer_id,
	    'kind', d.kind, 'url', d.url, 'bind_dn', d.bind_dn,
	    'base_dn', d.base_dn, 'ca_file', d.ca_file,
	    'login_attribute', d.login_attribute,
	    'sync_interval', d.sync_interval,
	    'last_sync_at', rfc3339(d.last_sync_at),
	    'last_error', d.last_error, 'users', d.users_seen,
	    'updated_at', rfc3339(d.updated_at))
$$;

CREATE FUNCTION alert_policy_json(p alert_policies) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('customer_id', p.customer_id,
	    'expiry_days', to_jsonb(p.expiry_days),
	    'channels', to_jsonb(p.channels), 'on_expired', p.on_expired,
	    'on_lockout', p.on_lockout, 'updated_at', rfc3339(p.updated_at))
$$;

-- The user JSON gains what sync knows of the account.
CREATE OR REPLACE FUNCTION user_json(u users) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('id', u.id, 'customer_id', u.customer_id,
	    'display_name', u.display_name, 'email', u.email,
	    'phone', u.phone, 'login', u.login, 'status', u.status,
	    'created_at', rfc3339(u.created_at),
	    'updated_at', rfc3339(u.updated_at),
	    'directory', CASE WHEN u.directory_guid IS NULL THEN NULL
	    ELSE jsonb_build_object('guid', u.directory_guid,
	    'password_expires_at', rfc3339(u.password_expires_at),
	    'locked_out', u.locked_out, 'disabled', u.directory_disabled,
	    'synced_at', rfc3339(u.synced_at)) END)
$$;

-- Lease the directories due for a sync to the calling process. A sync
-- asked for while one runs moves next_sync_at past claimed_at, and the
-- end of the running one keeps it (see directory_next_sync).
CREATE FUNCTION directory_claim(p_limit int, p_lease_s int)
RETURNS SETOF directories LANGUAGE sql AS $$
	UPDATE directories d SET
	    lease_until = now() + make_interval(secs => p_lease_s),
	    claimed_at = now()
	WHERE (d.msp_id, d.customer_id) IN (
		SELECT q.msp_id, q.customer_id FROM directories q
		WHERE q.next_sync_at <= now()
		    AND (q.lease_until IS NULL OR q.lease_until < now())
		ORDER BY q.next_sync_at LIMIT p_limit
		FOR UPDATE SKIP LOCKED)
	RETURNING d.*
$$;

-- When to sync next after the leased sync ends: at once when a sync was
-- asked for (or the settings changed) while it ran, else after delay.
CREATE FUNCTION directory_next_sync(d directories, p_delay_s int)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN d.claimed_at IS NOT NULL
	    AND d.next_sync_at > d.claimed_at THEN d.next_sync_at
	    ELSE now() + make_interval(secs => p_delay_s) END
$$;

-- A sync failed: record why and retry with back-off, capped at the
-- interval.
CREATE FUNCTION directory_failed(p_msp uuid, p_customer uuid,
    p_error text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	d directories;
BEGIN
	UPDATE directories x SET failures = failures + 1,
	    last_error = p_error, lease_until = NULL,
	    next_sync_at = directory_next_sync(x, least(sync_interval,
	        15 * power(2, least(failures, 6))::int))
	    WHERE msp_id = p_msp AND customer_id = p_customer
	    RETURNING * INTO d;
	IF FOUND AND d.failures = 1 THEN
		PERFORM audit_append(p_msp, 'directory.sync_failed', 'system',
		    NULL, 'customer', p_customer,
		    jsonb_build_object('error', p_error));
	END IF;
END
$$;

-- Apply what a sync read: p_users is a JSON array of objects with guid,
-- dn, login, display_name, mail, mobile, pwd_last_set, password_expires
-- (Unix seconds or null for never), locked, lockout_time, disabled.
-- Users are matched by objectGUID, so renames follow. Returns counts.
CREATE FUNCTION directory_apply(p_msp uuid, p_customer uuid,
    p_users jsonb, p_full boolean, p_max_usn bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	r record;
	created int;
	updated int;
	total int;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS sync_in (
		guid uuid, dn text, login text, display_name text, mail text,
		mobile text, pwd_last_set bigint, password_expires bigint,
		locked boolean, lockout_time bigint, disabled boolean)
	    ON COMMIT DROP;
	TRUNCATE sync_in;
	-- Mobile numbers are often written "+44 (0)7700 900-123": drop the
	-- trunk zero and the separators, then use what is E.164.
	INSERT INTO sync_in SELECT x.guid, x.dn, x.login, x.display_name,
	    x.mail, regexp_replace(replace(x.mobile, '(0)', ''),
	        '[[:space:]().-]', '', 'g'),
	    x.pwd_last_set, x.password_expires, x.locked, x.lockout_time,
	    x.disabled
	FROM jsonb_to_recordset(p_users) AS x(
	    guid uuid, dn text, login text, display_name text, mail text,
	    mobile text, pwd_last_set bigint, password_expires bigint,
	    locked boolean, lockout_time bigint, disabled boolean)
	    WHERE x.guid IS NOT NULL;
	GET DIAGNOSTICS total = ROW_COUNT;

	-- Changes worth an event, read before the rows are overwritten.
	FOR r IN SELECT u.id, u.locked_out, u.pwd_last_set,
	    s.locked, s.pwd_last_set AS new_pwd_last_set, s.lockout_time
	    FROM sync_in s JOIN users u ON u.msp_id = p_msp
	    AND u.customer_id = p_customer AND u.directory_guid = s.guid
	    WHERE u.locked_out IS DISTINCT FROM s.locked
	    OR u.pwd_last_set IS DISTINCT FROM s.pwd_last_set LOOP
		IF r.locked AND NOT r.locked_out THEN
			PERFORM audit_append(p_msp, 'account.locked_out',
			    'system', NULL, 'user', r.id, jsonb_build_object(
			    'lockout_time', r.lockout_time));
		ELSIF r.locked_out AND NOT r.locked THEN
			PERFORM audit_append(p_msp, 'account.unlocked',
			    'system', NULL, 'user', r.id,
			    jsonb_build_object('source', 'directory'));
		END IF;
		IF r.pwd_last_set IS NOT NULL
		    AND r.pwd_last_set IS DISTINCT FROM r.new_pwd_last_set THEN
			PERFORM audit_append(p_msp, 'password.changed',
			    'system', NULL, 'user', r.id, jsonb_build_object(
			    'pwd_last_set', r.new_pwd_last_set));
		END IF;
	END LOOP;

	UPDATE users u SET directory_dn = s.dn,
	    login = coalesce(s.login, u.login),
	    display_name = coalesce(nullif(s.display_name, ''),
	        s.login, u.display_name),
	    email = coalesce(s.mail, u.email),
	    phone = CASE WHEN s.mobile ~ '^\+[1-9][0-9]{7,14}$'
	        THEN s.mobile ELSE u.phone END,
	    pwd_last_set = s.pwd_last_set,
	    password_expires_at = to_timestamp(s.password_expires),
	    locked_out = s.locked, lockout_time = s.lockout_time,
	    directory_disabled = s.disabled, synced_at = now(),
	    updated_at = CASE WHEN (u.directory_dn, u.login, u.display_name,
	        u.email) IS DISTINCT FROM (s.dn, s.login, s.display_name,
	        s.mail) THEN now() ELSE u.updated_at END
	    FROM sync_in s
	    WHERE u.msp_id = p_msp AND u.customer_id = p_customer
	    AND u.directory_guid = s.guid;
	GET DIAGNOSTICS updated = ROW_COUNT;

	INSERT INTO users (msp_id, id, customer_id, display_name, email,
	    phone, login, directory_guid, directory_dn, pwd_last_set,
	    password_expires_at, locked_out, lockout_time,
	    directory_disabled, synced_at)
	SELECT p_msp, gen_random_uuid(), p_customer,
	    coalesce(nullif(s.display_name, ''), s.login, s.dn), s.mail,
	    CASE WHEN s.mobile ~ '^\+[1-9][0-9]{7,14}$' THEN s.mobile END,
	    s.login, s.guid, s.dn, s.pwd_last_set,
	    to_timestamp(s.password_expires), s.locked, s.lockout_time,
	    s.disabled, now()
	FROM sync_in s WHERE NOT EXISTS (SELECT 1 FROM users u
	    WHERE u.msp_id = p_msp AND u.customer_id = p_customer
	    AND u.directory_guid = s.guid);
	GET DIAGNOSTICS created = ROW_COUNT;

	UPDATE directories x SET last_sync_at = now(), lease_until = NULL,
	    last_error = NULL, failures = 0,
	    full_sync = coalesce(x.full_sync
	        AND x.next_sync_at > x.claimed_at, false),
	    last_full_sync_at = CASE WHEN p_full THEN now()
	        ELSE last_full_sync_at END,
	    last_usn = greatest(last_usn, p_max_usn),
	    users_seen = CASE WHEN p_full THEN total ELSE users_seen END,
	    next_sync_at = directory_next_sync(x, sync_interval)
	    WHERE msp_id = p_msp AND customer_id = p_customer;

	IF created > 0 OR p_full THEN
		PERFORM audit_append(p_msp, 'directory.synced', 'system', NULL,
		    'customer', p_customer, jsonb_build_object(
		    'read', total, 'created', created, 'updated', updated,
		    'full', p_full));
	END IF;
	RETURN jsonb_build_object('read', total, 'created', created,
	    'updated', updated);
END
$$;

-- Queue the alerts a customer's users are due, once per threshold per
-- password (or per lockout). When several expiry thresholds are crossed
-- at once only the nearest one is sent; the others are recorded as
-- passed. Push goes to users with an active device, else SMS, else
-- email, within the channels the policy allows and the server has
-- (p_sms, p_email). Returns the outbox ids.
CREATE FUNCTION alerts_evaluate(p_msp uuid, p_customer uuid,
    p_sms boolean, p_email boolean) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
	p alert_policies;
	u record;
	t int;
	nearest int;
	days_left int;
	kind text;
	threshold int;
	key bigint;
	channel text;
	body text;
	job uuid;
	jobs uuid[] := '{}';
	msp_name text;
BEGIN
	SELECT * INTO p FROM alert_policies
	    WHERE msp_id = p_msp AND customer_id = p_customer;
	IF NOT FOUND THEN
		p.expiry_days := '{14,7,3,1}';
		p.channels := '{push,sms,email}';
		p.on_expired := true;
		p.on_lockout := true;
	END IF;
	SELECT name INTO msp_name FROM msps WHERE id = p_msp;

	FOR u IN SELECT us.*, EXISTS (SELECT 1 FROM devices d
	    WHERE d.msp_id = us.msp_id AND d.user_id = us.id
	    AND d.status = 'active') AS has_device
	    FROM users us WHERE us.msp_id = p_msp
	    AND us.customer_id = p_customer AND us.status = 'active'
	    AND us.directory_guid IS NOT NULL AND NOT us.directory_disabled
	    AND (us.locked_out OR us.password_expires_at < now()
	        + make_interval(days => (SELECT coalesce(max(x), 0)
	        FROM unnest(p.expiry_days) x) + 1)) LOOP
		kind := NULL;

		IF u.locked_out AND p.on_lockout THEN
			kind := 'account_locked';
			threshold := 0;
			key := u.lockout_time;
			body := msp_name || ': your account is locked. Open '
			    || 'vouch to unlock it, or report it if it '
			    || 'was not you.';
		ELSIF u.password_expires_at IS NOT NULL
		    AND u.password_expires_at <= now() AND p.on_expired THEN
			kind := 'password_expired';
			threshold := 0;
			key := u.pwd_last_set;
			body := msp_name || ': your password has expired. '
			    || 'Open vouch or the reset page to set a new one.';
		ELSIF u.password_expires_at IS NOT NULL
		    AND u.password_expires_at > now() THEN
			days_left := ceil(extract(epoch FROM
			    u.password_expires_at - now()) / 86400.0)::int;
			nearest := NULL;
			FOREACH t IN ARRAY p.expiry_days LOOP
				IF days_left <= t AND (nearest IS NULL
				    OR t < nearest) THEN
					nearest := t;
				END IF;
			END LOOP;
			IF nearest IS NOT NULL THEN
				kind := 'password_expiring';
				threshold := nearest;
				key := u.pwd_last_set;
				body := msp_name || ': your password expires in '
				    || days_left || CASE WHEN days_left = 1
				    THEN ' day' ELSE ' days' END || '. Open vouch '
				    || 'or the reset page to change it.';
			END IF;
		END IF;
		CONTINUE WHEN kind IS NULL OR key IS NULL;

		-- Thresholds farther out than the nearest count as passed.
		IF kind = 'password_expiring' THEN
			INSERT INTO alerts_sent (msp_id, user_id, kind,
			    threshold, key, delivered)
			SELECT p_msp, u.id, kind, x, key, false
			FROM unnest(p.expiry_days) x WHERE x > threshold
			ON CONFLICT DO NOTHING;
		END IF;

		channel := CASE
		    WHEN 'push' = ANY (p.channels) AND u.has_device THEN 'push'
		    WHEN 'sms' = ANY (p.channels) AND p_sms
		        AND u.phone IS NOT NULL THEN 'sms'
		    WHEN 'email' = ANY (p.channels) AND p_email
		        AND u.email IS NOT NULL THEN 'email' END;

		INSERT INTO alerts_sent (msp_id, user_id, kind, threshold, key,
		    delivered)
		VALUES (p_msp, u.id, kind, threshold, key, channel IS NOT NULL)
		ON CONFLICT DO NOTHING;
		CONTINUE WHEN NOT FOUND OR channel IS NULL;

		IF channel = 'push' THEN
			WITH ins AS (
				INSERT INTO outbox (msp_id, id, kind, template,
				    user_id, device_id, payload, give_up_at)
				SELECT p_msp, gen_random_uuid(), 'push', kind,
				    u.id, d.id, body, now() + interval '1 day'
				FROM devices d WHERE d.msp_id = p_msp
				    AND d.user_id = u.id AND d.status = 'active'
				RETURNING id)
			SELECT jobs || array_agg(id) INTO jobs FROM ins;
		ELSE
			job := gen_random_uuid();
			INSERT INTO outbox (msp_id, id, kind, template, user_id,
			    payload, give_up_at)
			VALUES (p_msp, job, channel, kind, u.id, body,
			    now() + interval '1 day');
			jobs := jobs || job;
		END IF;
		PERFORM audit_append(p_msp, 'alert.sent', 'system', NULL,
		    'user', u.id, jsonb_build_object('kind', kind,
		    'threshold', threshold, 'channel', channel));
	END LOOP;

	RETURN jobs;
END
$$;
