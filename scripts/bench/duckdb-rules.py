#!/usr/bin/env python3
"""The built-in rules of trailguard as one DuckDB query over CloudTrail log files, for the
benchmark baseline (the same findings as `trailguard scan`: event id and rule id per line).

    duckdb-rules.py GLOB OUT.tsv [RUNS]

Reads every record of every file (`read_json` with an explicit typed schema for the fields the
rules read, `Records` unnested), applies the rules' predicates, writes the findings to OUT.tsv
and prints the best wall time of RUNS runs (default 3) of the query alone: interpreter start,
import and connection are not counted. DuckDB uses every core (its default)."""
import sys, time
import duckdb

QUERY = """
WITH r AS (
  SELECT unnest(Records) AS e
  FROM read_json(?, format = 'auto', records = true, compression = 'gzip',
    columns = {Records: 'STRUCT(eventID VARCHAR, eventSource VARCHAR, eventName VARCHAR,
      errorCode VARCHAR, errorMessage VARCHAR,
      requestParameters STRUCT(status VARCHAR, userName VARCHAR),
      userIdentity STRUCT(type VARCHAR))[]'})
)
SELECT e.eventID, rule FROM r, LATERAL (VALUES
  (CASE WHEN starts_with(e.eventSource, 'kms')
         AND (ends_with(e.errorMessage, ' is pending deletion.')
              OR ends_with(e.errorMessage, ' is pending replica deletion.'))
        THEN 'kms_pending_deletion_use' END),
  (CASE WHEN e.eventSource = 'kms.amazonaws.com' AND e.eventName = 'DisableKey' AND e.errorCode IS NULL
        THEN 'kms_key_disabled' END),
  (CASE WHEN e.eventSource = 'kms.amazonaws.com' AND e.eventName = 'ScheduleKeyDeletion' AND e.errorCode IS NULL
        THEN 'kms_key_deletion_scheduled' END),
  (CASE WHEN e.eventSource = 'kms.amazonaws.com'
         AND e.eventName IN ('DeleteAlias', 'UpdateAlias', 'UntagResource', 'TagResource') AND e.errorCode IS NULL
        THEN 'kms_protection_removed' END),
  (CASE WHEN e.eventSource = 'iam.amazonaws.com' AND e.eventName = 'UpdateAccessKey'
         AND e.requestParameters.status = 'Active' AND e.errorCode IS NULL
        THEN 'iam_access_key_reactivated' END),
  (CASE WHEN e.eventSource = 'iam.amazonaws.com' AND e.eventName = 'CreateAccessKey'
         AND e.userIdentity.type = 'Root' AND e.requestParameters.userName IS NULL AND e.errorCode IS NULL
        THEN 'iam_root_access_key_created' END)
) AS t(rule)
WHERE rule IS NOT NULL
"""

def main():
    pattern, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3
    con = duckdb.connect()
    best, rows = None, None
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(QUERY, [pattern]).fetchall()
        secs = time.perf_counter() - started
        best = secs if best is None else min(best, secs)
    with open(out, "w") as f:
        for event_id, rule in rows:
            f.write(f"{event_id}\t{rule}\n")
    print(f"{best:.3f}")

main()
