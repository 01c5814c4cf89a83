-- Issue 5: asynchronous invocations (queued until they end), their attempts, idempotency
-- keys and the state of cron schedules. Times are Unix ms.
CREATE TABLE async_invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    event TEXT NOT NULL,             -- the JSON payload as accepted
    status TEXT NOT NULL,            -- queued | running | failed (retry due) | succeeded | dead
    source TEXT NOT NULL,            -- api | schedule | redrive | destination
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,                     -- JSON, once succeeded
    dead_reason TEXT,                -- retries_exhausted | event_too_old | function_not_found
    finished_at INTEGER,
    dead_letter INTEGER NOT NULL DEFAULT 0,  -- 1 while listed in the function's dead letters
    redrive_of TEXT,
    redriven_as TEXT
) STRICT;
CREATE INDEX async_open ON async_invocations (status) WHERE status IN ('queued', 'running', 'failed');
CREATE INDEX async_dead_letters ON async_invocations (function, finished_at) WHERE dead_letter = 1;
CREATE INDEX async_by_function ON async_invocations (function);

-- One row per finished attempt; its logs are those of the invocation record execution_id.
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

-- A key's first invocation, per function, for 24 h.
CREATE TABLE idempotency_keys (
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    kind TEXT NOT NULL,              -- sync | async
    created_at INTEGER NOT NULL,
    reply TEXT,                      -- sync: the answer to replay (JSON)
    PRIMARY KEY (function, key)
) STRICT;
CREATE INDEX idempotency_age ON idempotency_keys (created_at);

-- The last fire time of each schedule (key: position, cron and timezone).
CREATE TABLE schedule_state (
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    last_fire_at INTEGER NOT NULL,
    PRIMARY KEY (function, key)
) STRICT;
