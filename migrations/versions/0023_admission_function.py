"""A request's admission in one round trip: ``playground_admit(...)`` does what the limiter
did in eight statements (the storing routes' daily byte quota, the rate window's hit, then
under the class's advisory lock the expired leases' clean-up, the live counts, the fair share
and the new lease), so the way to a first token waits on Postgres once instead of eight times.

The rules are the ones backend/limits had (docs/security.md), in order, each refusal named:

- ``quota``: a storing route's client has stored ``p_quota`` bytes or more today (UTC);
- ``window``: the client's hits in this fixed window are over ``p_per_window`` (the refused
  hit is counted, as before);
- ``client``: the client holds ``p_per_client`` slots of the class;
- ``global``: the class's ceiling (``p_ceiling``; NULL: none) is reached;
- ``share``: the client holds a slot and its fair share already (the ceiling divided among
  the clients holding slots, itself counted; at least 1), or taking one more would leave
  fewer than ``p_reserve`` slots free (kept for clients that hold none).

A client holding nothing is refused a slot only by its own window, quota or the ceiling.
Correctness across processes: each statement of a VOLATILE plpgsql function takes a fresh
snapshot (READ COMMITTED), so the counts read after the advisory lock see every lease
committed before it; the lock is held until the calling statement's transaction ends. The
commit does not wait for the WAL flush (``synchronous_commit`` off locally, as before: a crash
can only lose a hit or a lease of the last instants; both tables are UNLOGGED anyway).

Revision ID: 0023_admission_function
Revises: 0022_label_context_words
"""

from alembic import op

revision = "0023_admission_function"
down_revision = "0022_label_context_words"
branch_labels = None
depends_on = None

ADMIT = """
CREATE FUNCTION playground_admit(
  p_client text,
  p_class text,
  p_window_s float8,
  p_per_window integer,
  p_lease uuid,
  p_ttl_s float8,
  p_per_client integer,
  p_ceiling integer,
  p_reserve integer,
  p_quota bigint
) RETURNS TABLE (refused text, hits integer, retry_s float8, used_bytes bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  this_window timestamptz :=
    to_timestamp(floor(extract(epoch FROM now()) / p_window_s) * p_window_s);
  mine integer;
  everyone integer;
  holders integer;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  IF p_quota IS NOT NULL THEN
    used_bytes := coalesce((SELECT u.bytes FROM client_byte_usage u
                            WHERE u.client_key = p_client
                              AND u.day = (now() AT TIME ZONE 'UTC')::date), 0);
    IF used_bytes >= p_quota THEN
      refused := 'quota';
      retry_s := extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC')
                 + interval '1 day' - (now() AT TIME ZONE 'UTC'));
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;

  INSERT INTO rate_limit_windows AS w (client_key, route_class, window_start, hits)
  VALUES (p_client, p_class, this_window, 1)
  ON CONFLICT (client_key, route_class, window_start) DO UPDATE SET hits = w.hits + 1
  RETURNING w.hits INTO hits;
  IF hits > p_per_window THEN
    refused := 'window';
    retry_s := extract(epoch FROM this_window + make_interval(secs => p_window_s) - now());
    RETURN NEXT;
    RETURN;
  END IF;

  PERFORM pg_advisory_xact_lock(hashtext('work_leases:' || p_class));
  DELETE FROM work_leases WHERE expires_at < now();
  SELECT count(*) FILTER (WHERE l.client_key = p_client), count(*),
         count(DISTINCT l.client_key)
    INTO mine, everyone, holders
    FROM work_leases l WHERE l.route_class = p_class;
  IF mine >= p_per_client THEN
    refused := 'client';
  ELSIF p_ceiling IS NULL THEN
    refused := NULL;
  ELSIF everyone >= p_ceiling THEN
    refused := 'global';
  ELSIF mine = 0 THEN
    refused := NULL;
  ELSIF mine >= greatest(1, p_ceiling / greatest(holders, 1))
        OR p_ceiling - everyone - 1 < p_reserve THEN
    refused := 'share';
  END IF;
  IF refused IS NULL THEN
    INSERT INTO work_leases (lease_id, client_key, route_class, expires_at)
    VALUES (p_lease, p_client, p_class, now() + make_interval(secs => p_ttl_s));
  END IF;
  RETURN NEXT;
END
$$
"""

SIGNATURE = (
    "playground_admit(text, text, float8, integer, uuid, float8, integer, integer, integer, bigint)"
)


def upgrade() -> None:
    op.execute(ADMIT)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
