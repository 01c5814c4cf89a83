-- Issue 14: dependency builds. One row per function version whose dependencies were
-- installed (or found in the cache), written when the build ends: its status, the
-- installer's output, and the cache entry (<deps>/<cache_key>) it made or used. A build
-- cut short by a kill has no row; the version is built again at start.
CREATE TABLE builds (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'cached')),
    installer TEXT NOT NULL CHECK (installer IN ('uv', 'bun')),
    cache_key TEXT NOT NULL,
    log TEXT NOT NULL,
    error TEXT,
    started_at INTEGER NOT NULL,  -- Unix ms
    finished_at INTEGER NOT NULL, -- Unix ms
    PRIMARY KEY (function, version),
    FOREIGN KEY (function, version) REFERENCES function_versions (function, version) ON DELETE CASCADE
) STRICT;
CREATE INDEX builds_by_key ON builds (cache_key);
