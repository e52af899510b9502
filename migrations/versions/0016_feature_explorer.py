"""Feature explorer: each run's per-feature aggregate, the per-feature indexes folded from it,
and the SAE catalog / label cache.

Written with the run (same statement, same replace-on-rerun semantics, removed with its
preview by prune or delete):
- ``activation_run_features``: one row per run with activations; ``data`` is the run's
  per-feature aggregate (backend/activations/aggregate.py has the byte layout) and ``version``
  changes on every write. A trigger keeps the fold queue in step: a new version is queued in
  ``feature_pending_runs``; a version that was already folded is queued, with its data, in
  ``feature_pending_removals`` when it is replaced or deleted.

Folded from those queues (backend/features/fold.py; readers add what is still queued, so
answers are exact at every moment):
- ``feature_saes``: one row per (sae_id, layer): the SAE service's metadata (d_sae, labels and
  examples flags), the fixed histogram edges, and run/position totals.
- ``feature_stats`` (runs fired, and the bookkeeping of the leaderboard), ``feature_hist``
  (positions fired per fixed bin), ``feature_top_runs`` (a bounded per-feature leaderboard:
  every folded run whose max is at or above the feature's floor), ``feature_run_members``
  (per run: GIN-indexed keys feature_id * 64 + bin of its max, for pages below the floor).
- ``feature_labels`` (searchable) and ``feature_examples`` (cached SAE examples).

Existing previews are backfilled from their JSON timelines, in batches, by this migration;
the backfilled runs are queued for the fold like new runs.

Revision ID: 0016_feature_explorer
Revises: 0015_staging_safety
"""

from alembic import op
from sqlalchemy import text

revision = "0016_feature_explorer"
down_revision = "0015_staging_safety"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 200
# = backend.activations.aggregate.HIST_EDGES (a test checks they are equal).
HIST_EDGES = (
    0.0, 0.01, 0.013417128354799116, 0.018001933328915445, 0.024153425010859465,
    0.03240696035787167, 0.04348083467104509, 0.058338793975521185,
    0.07827390868337492, 0.10502110796366664, 0.1409081685511731,
    0.18905829836907578, 0.2536619455757798, 0.34034148825183075,
    0.45664054323381686, 0.6126804780573316, 0.8220412614574901, 1.1029433117916125,
    1.4798331982375286, 1.9855111964445809, 2.6639858572587705, 3.574304018221048,
    4.795689579154604, 6.434438263328988, 8.633168407011574, 11.583232862547103,
    15.541372208032168, 20.852058572487536, 27.97747463288545, 37.53773681925603,
    50.364863305262695, 67.57518355386216, 90.6664911341279, 121.64839490258501,
    163.21721285632736, 218.99062946059126, 293.82253839710063, 394.22547112067906,
    528.9373746757303, 709.6820647674746, 952.1895354084065, 1277.564921467113,
    1714.1252532913106, 2299.863853961206, 3085.7568527160474, 4140.199576459216,
    5554.958913183824, 7453.1596743822765, 10000.0,
)  # fmt: skip
EDGES_SQL = "'{" + ",".join(repr(e) for e in HIST_EDGES) + "}'::float8[]"
N_BINS = len(HIST_EDGES) - 1
MAX_FEATURE_ID = 2**31 // 64 - 1

TABLES = [
    """
    CREATE TABLE feature_saes (
      sae_key INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      sae_id TEXT NOT NULL,
      layer INT NOT NULL,
      d_sae INT,
      has_labels BOOLEAN NOT NULL DEFAULT false,
      has_examples BOOLEAN NOT NULL DEFAULT false,
      model_id TEXT,
      listed_at TIMESTAMPTZ,
      labels_source TEXT CHECK (labels_source IN ('sae_service', 'import')),
      labels_loaded_at TIMESTAMPTZ,
      hist_edges DOUBLE PRECISION[] NOT NULL,
      runs_total BIGINT NOT NULL DEFAULT 0,
      positions_total BIGINT NOT NULL DEFAULT 0,
      UNIQUE (sae_id, layer)
    )
    """,
    """
    CREATE TABLE feature_labels (
      sae_key INT NOT NULL REFERENCES feature_saes (sae_key) ON DELETE CASCADE,
      feature_id INT NOT NULL,
      label TEXT NOT NULL,
      search TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', label)) STORED,
      PRIMARY KEY (sae_key, feature_id)
    )
    """,
    "CREATE INDEX feature_labels_search_idx ON feature_labels USING gin (search)",
    """
    CREATE TABLE feature_examples (
      sae_key INT NOT NULL REFERENCES feature_saes (sae_key) ON DELETE CASCADE,
      feature_id INT NOT NULL,
      examples JSONB NOT NULL,
      fetched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      PRIMARY KEY (sae_key, feature_id)
    )
    """,
    "CREATE SEQUENCE activation_run_features_version_seq",
    """
    CREATE TABLE activation_run_features (
      request_id TEXT PRIMARY KEY
        REFERENCES activation_run_previews (request_id) ON DELETE CASCADE,
      version BIGINT NOT NULL DEFAULT nextval('activation_run_features_version_seq'),
      sae_id TEXT NOT NULL,
      sae_layer INT NOT NULL,
      n_positions INT NOT NULL,
      data BYTEA NOT NULL
    )
    """,
    # Uncompressed out of line, like the previews' timelines: pglz costs more than it saves.
    "ALTER TABLE activation_run_features ALTER COLUMN data SET STORAGE EXTERNAL",
    """
    CREATE TABLE feature_pending_runs (
      request_id TEXT NOT NULL,
      version BIGINT NOT NULL,
      PRIMARY KEY (request_id, version)
    )
    """,
    """
    CREATE TABLE feature_pending_removals (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      request_id TEXT NOT NULL,
      version BIGINT NOT NULL,
      sae_id TEXT NOT NULL,
      sae_layer INT NOT NULL,
      n_positions INT NOT NULL,
      data BYTEA NOT NULL
    )
    """,
    "ALTER TABLE feature_pending_removals ALTER COLUMN data SET STORAGE EXTERNAL",
    """
    CREATE TABLE feature_stats (
      sae_key INT NOT NULL,
      feature_id INT NOT NULL,
      runs_fired BIGINT NOT NULL DEFAULT 0,
      top_count INT NOT NULL DEFAULT 0,
      top_full BOOLEAN NOT NULL DEFAULT false,
      floor_act REAL,
      floor_request_id TEXT,
      floor_version BIGINT,
      PRIMARY KEY (sae_key, feature_id)
    )
    """,
    # Label search walks features most-fired first and stops at its page (db/feature_reads.py).
    "CREATE INDEX feature_stats_fired_idx ON feature_stats (runs_fired DESC, sae_key, feature_id)",
    """
    CREATE TABLE feature_hist (
      sae_key INT NOT NULL,
      feature_id INT NOT NULL,
      bin SMALLINT NOT NULL,
      count BIGINT NOT NULL,
      PRIMARY KEY (sae_key, feature_id, bin)
    )
    """,
    """
    CREATE TABLE feature_top_runs (
      sae_key INT NOT NULL,
      feature_id INT NOT NULL,
      max_act REAL NOT NULL,
      request_id TEXT NOT NULL,
      version BIGINT NOT NULL,
      max_position INT NOT NULL,
      PRIMARY KEY (request_id, version, sae_key, feature_id)
    )
    """,
    "CREATE INDEX feature_top_runs_rank_idx ON feature_top_runs "
    "(sae_key, feature_id, max_act DESC, request_id DESC, version DESC)",
    """
    CREATE TABLE feature_run_members (
      request_id TEXT NOT NULL,
      version BIGINT NOT NULL,
      sae_key INT NOT NULL,
      keys INT[] NOT NULL,
      max_acts REAL[] NOT NULL,
      PRIMARY KEY (request_id, version)
    )
    """,
    "CREATE INDEX feature_run_members_keys_idx ON feature_run_members USING gin (keys)",
]

TRIGGER = [
    """
    CREATE FUNCTION activation_run_features_queue() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP <> 'INSERT' THEN
        -- Still queued and not being folded: never folded, nothing to take back. Folded, or
        -- being folded right now (its queue row locked: the writer never waits for a fold),
        -- queue its removal. Should that fold roll back, the fold pairs the left-over queue
        -- row with this removal and drops both; readers skip such pairs.
        DELETE FROM feature_pending_runs
         WHERE ctid = (SELECT ctid FROM feature_pending_runs
                        WHERE request_id = OLD.request_id AND version = OLD.version
                        FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN
          INSERT INTO feature_pending_removals
            (request_id, version, sae_id, sae_layer, n_positions, data)
          VALUES (OLD.request_id, OLD.version, OLD.sae_id, OLD.sae_layer, OLD.n_positions,
                  OLD.data);
        END IF;
      END IF;
      IF TG_OP <> 'DELETE' THEN
        INSERT INTO feature_pending_runs (request_id, version)
        VALUES (NEW.request_id, NEW.version);
      END IF;
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER activation_run_features_queue
    AFTER INSERT OR UPDATE OR DELETE ON activation_run_features
    FOR EACH ROW EXECUTE FUNCTION activation_run_features_queue()
    """,
]

# One batch of existing previews -> activation_run_features rows, built from the JSON timeline
# exactly as backend/activations/aggregate.py builds them from a packed one (same bytes).
BACKFILL = f"""
WITH batch AS (
  SELECT request_id, sae_id, sae_layer, feature_timeline
  FROM activation_run_previews
  WHERE sae_id IS NOT NULL AND sae_layer IS NOT NULL AND request_id > :after
  ORDER BY request_id
  LIMIT :n
), kept AS (
  SELECT b.request_id, (e.ord - 1)::int AS position, e.entry
  FROM batch b
  CROSS JOIN LATERAL jsonb_array_elements(b.feature_timeline) WITH ORDINALITY AS e(entry, ord)
  WHERE jsonb_typeof(e.entry) = 'object'
    AND (e.entry->'special') IS DISTINCT FROM 'true'::jsonb
), fired AS (
  SELECT k.request_id, k.position, (f->>'feature_id')::int AS fid,
         (f->>'activation')::float8 AS act
  FROM kept k CROSS JOIN LATERAL jsonb_array_elements(k.entry->'features') AS f
  WHERE (f->>'feature_id')::bigint BETWEEN 0 AND {MAX_FEATURE_ID}
), per_feature AS (
  SELECT request_id, fid, max(act)::float4 AS mx,
         (array_agg(position ORDER BY act DESC, position))[1] AS mpos
  FROM fired GROUP BY request_id, fid
), per_bin AS (
  SELECT request_id, fid,
         least(greatest(width_bucket(act, {EDGES_SQL}) - 1, 0), {N_BINS - 1})::int2 AS bin,
         count(*)::int AS n
  FROM fired GROUP BY 1, 2, 3
), features AS (
  SELECT request_id, count(*)::int AS nf,
         string_agg(int4send(fid), ''::bytea ORDER BY fid) AS ids,
         string_agg(float4send(mx), ''::bytea ORDER BY fid) AS maxes,
         string_agg(int4send(mpos), ''::bytea ORDER BY fid) AS poss
  FROM per_feature GROUP BY request_id
), hists AS (
  SELECT request_id, count(*)::int AS nh,
         string_agg(int4send(fid), ''::bytea ORDER BY fid, bin) AS fids,
         string_agg(int4send(n), ''::bytea ORDER BY fid, bin) AS counts,
         string_agg(int2send(bin), ''::bytea ORDER BY fid, bin) AS bins
  FROM per_bin GROUP BY request_id
), positions AS (
  SELECT request_id, count(*)::int AS np FROM kept GROUP BY request_id
), written AS (
  INSERT INTO activation_run_features (request_id, sae_id, sae_layer, n_positions, data)
  SELECT b.request_id, b.sae_id, b.sae_layer, coalesce(ps.np, 0),
         'RFA1'::bytea || int4send(coalesce(f.nf, 0)) || int4send(coalesce(h.nh, 0))
         || coalesce(f.ids, ''::bytea) || coalesce(f.maxes, ''::bytea)
         || coalesce(f.poss, ''::bytea) || coalesce(h.fids, ''::bytea)
         || coalesce(h.counts, ''::bytea) || coalesce(h.bins, ''::bytea)
  FROM batch b
  LEFT JOIN features f USING (request_id)
  LEFT JOIN hists h USING (request_id)
  LEFT JOIN positions ps USING (request_id)
  RETURNING request_id
)
SELECT max(request_id) FROM written
"""


def upgrade() -> None:
    for statement in TABLES + TRIGGER:
        op.execute(statement)
    bind = op.get_bind()
    after = ""
    while True:
        last = bind.execute(text(BACKFILL), {"after": after, "n": BACKFILL_BATCH}).scalar()
        if last is None:
            break
        after = last


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS activation_run_features_queue ON activation_run_features")
    op.execute("DROP FUNCTION IF EXISTS activation_run_features_queue()")
    for table in (
        "feature_run_members",
        "feature_top_runs",
        "feature_hist",
        "feature_stats",
        "feature_pending_removals",
        "feature_pending_runs",
        "activation_run_features",
        "feature_examples",
        "feature_labels",
        "feature_saes",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP SEQUENCE IF EXISTS activation_run_features_version_seq")
