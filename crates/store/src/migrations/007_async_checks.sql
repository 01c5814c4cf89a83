-- Issue 13: the closed sets of asynchronous invocations' text columns are CHECKed, so a
-- value the code does not know can never be stored (the store reads them into enums).
-- SQLite cannot add a CHECK to a table: both tables are rebuilt with their rows and
-- indexes. The attempts go first, so that dropping the old invocations cascades to nothing.
ALTER TABLE async_attempts RENAME TO async_attempts_old;
ALTER TABLE async_invocations RENAME TO async_invocations_old;

CREATE TABLE async_invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'failed', 'succeeded', 'dead')),
    source TEXT NOT NULL CHECK (source IN ('api', 'schedule', 'redrive', 'destination')),
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    dead_reason TEXT CHECK (dead_reason IN
        ('retries_exhausted', 'event_too_old', 'function_not_found', 'destination_hops_exceeded')),
    finished_at INTEGER,
    dead_letter INTEGER NOT NULL DEFAULT 0 CHECK (dead_letter IN (0, 1)),
    redrive_of TEXT,
    redriven_as TEXT,
    hops INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO async_invocations (id, function, event, status, source, created_at, next_attempt_at,
    attempts, result, dead_reason, finished_at, dead_letter, redrive_of, redriven_as, hops)
SELECT id, function, event, status, source, created_at, next_attempt_at,
    attempts, result, dead_reason, finished_at, dead_letter, redrive_of, redriven_as, hops
FROM async_invocations_old;

CREATE TABLE async_attempts (
    invocation_id TEXT NOT NULL REFERENCES async_invocations (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    execution_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    status TEXT NOT NULL,
    error_json TEXT,
    PRIMARY KEY (invocation_id, attempt)
) STRICT;
INSERT INTO async_attempts (invocation_id, attempt, execution_id, version, started_at, duration_ms,
    status, error_json)
SELECT invocation_id, attempt, execution_id, version, started_at, duration_ms, status, error_json
FROM async_attempts_old;

DROP TABLE async_attempts_old;
DROP TABLE async_invocations_old;
CREATE INDEX async_open ON async_invocations (status) WHERE status IN ('queued', 'running', 'failed');
CREATE INDEX async_dead_letters ON async_invocations (function, finished_at) WHERE dead_letter = 1;
CREATE INDEX async_by_function ON async_invocations (function);

ALTER TABLE idempotency_keys RENAME TO idempotency_keys_old;
CREATE TABLE idempotency_keys (
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sync', 'async')),
    created_at INTEGER NOT NULL,
    reply TEXT,
    PRIMARY KEY (function, key)
) STRICT;
INSERT INTO idempotency_keys (function, key, invocation_id, kind, created_at, reply)
SELECT function, key, invocation_id, kind, created_at, reply FROM idempotency_keys_old;
DROP TABLE idempotency_keys_old;
CREATE INDEX idempotency_age ON idempotency_keys (created_at);
