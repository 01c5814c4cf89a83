CREATE TABLE functions (
    name TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,   -- Unix ms
    updated_at INTEGER NOT NULL,
    latest_version INTEGER NOT NULL
) STRICT;

CREATE TABLE function_versions (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    handler TEXT NOT NULL,
    code TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('deploying', 'ready', 'error')),
    status_reason TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (function, version)
) STRICT;

CREATE TABLE invocations (
    id TEXT PRIMARY KEY NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    cold_start INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    error_json TEXT
) STRICT;
CREATE INDEX invocations_by_function ON invocations (function, started_at DESC, id DESC);

CREATE TABLE log_lines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    invocation_id TEXT NOT NULL,
    function TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
) STRICT;
CREATE INDEX log_lines_by_invocation ON log_lines (invocation_id, seq);
CREATE INDEX log_lines_by_function ON log_lines (function, seq DESC);
