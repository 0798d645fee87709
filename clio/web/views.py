"""SQL views of the released store that this package defines (`clio.release` creates them).

`RUN_CHANGES_VIEW` compares each run with the run that finished before it,
cluster id by cluster id (ids recur across runs; a name may differ between
runs, so both names are given).
"""

from __future__ import annotations

RUN_CHANGES_VIEW = """
CREATE VIEW run_changes AS
WITH ordered AS (
    SELECT run_id, lag(run_id) OVER (ORDER BY finished_at, run_id) AS previous_run_id
    FROM runs
),
pairs AS (
    SELECT run_id, previous_run_id FROM ordered WHERE previous_run_id IS NOT NULL
),
now AS (
    SELECT p.run_id, p.previous_run_id, c.facet, c.level, c.cluster_id, c.name,
           c.n_users, c.n_conversations, c.share, c.concern_mean
    FROM pairs AS p JOIN clusters AS c ON c.run_id = p.run_id
),
before AS (
    SELECT p.run_id, p.previous_run_id, c.facet, c.level, c.cluster_id, c.name,
           c.n_users, c.n_conversations, c.share, c.concern_mean
    FROM pairs AS p JOIN clusters AS c ON c.run_id = p.previous_run_id
)
SELECT coalesce(now.run_id, before.run_id) AS run_id,
       coalesce(now.previous_run_id, before.previous_run_id) AS previous_run_id,
       coalesce(now.facet, before.facet) AS facet,
       coalesce(now.level, before.level) AS level,
       coalesce(now.cluster_id, before.cluster_id) AS cluster_id,
       CASE WHEN before.cluster_id IS NULL THEN 'new'
            WHEN now.cluster_id IS NULL THEN 'gone'
            ELSE 'kept' END AS status,
       now.name AS name,
       before.name AS previous_name,
       now.n_users AS n_users,
       before.n_users AS previous_n_users,
       coalesce(now.n_users, 0) - coalesce(before.n_users, 0) AS n_users_change,
       now.n_conversations AS n_conversations,
       before.n_conversations AS previous_n_conversations,
       coalesce(now.n_conversations, 0) - coalesce(before.n_conversations, 0)
           AS n_conversations_change,
       now.share AS share,
       before.share AS previous_share,
       coalesce(now.share, 0) - coalesce(before.share, 0) AS share_change,
       now.concern_mean AS concern_mean,
       before.concern_mean AS previous_concern_mean,
       now.concern_mean - before.concern_mean AS concern_change
FROM now
FULL OUTER JOIN before
    ON now.run_id = before.run_id AND now.cluster_id = before.cluster_id
       AND now.facet = before.facet
ORDER BY run_id, facet, level, abs(n_users_change) DESC, cluster_id
"""

RUN_CHANGES_COMMENT = (
    "Each run against the run that finished before it, per cluster id: status 'new' (released "
    "now, not before), 'gone' (released before, not now: merged, renamed or below the "
    "thresholds), 'kept'; the figures of both runs and their change (now minus before; a "
    "missing side counts as 0 for sizes and NULL for concern). The first run has no rows."
)
