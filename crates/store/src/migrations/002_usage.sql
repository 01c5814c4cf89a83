-- Issue 4: what each invocation cost, how its instance started, and a usage rollup that
-- outlives the retention of invocation records.
ALTER TABLE invocations ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN billed_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN peak_memory_mb INTEGER;
-- All NULL for a warm invocation, all set for a cold one.
ALTER TABLE invocations ADD COLUMN init_reason TEXT;
ALTER TABLE invocations ADD COLUMN init_ms REAL;
ALTER TABLE invocations ADD COLUMN init_sandbox_ms REAL;
ALTER TABLE invocations ADD COLUMN init_runtime_ms REAL;
ALTER TABLE invocations ADD COLUMN init_load_ms REAL;

-- One row per function and minute of started_at (Unix ms / 60000). Written in the same
-- transaction as the invocation records, so it never disagrees with them.
CREATE TABLE usage_minutes (
    function TEXT NOT NULL,
    minute INTEGER NOT NULL,
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    mb_ms INTEGER NOT NULL,          -- sum of memory_mb * billed_ms
    PRIMARY KEY (function, minute)
) STRICT, WITHOUT ROWID;

-- Invocations recorded before this migration still count (without memory, unknown then).
INSERT INTO usage_minutes (function, minute, invocations, errors, cold_starts, billed_ms, mb_ms)
SELECT function, started_at / 60000, COUNT(*), SUM(status <> 'succeeded'), SUM(cold_start),
       SUM(max(1, CAST(duration_ms AS INTEGER) + (duration_ms > CAST(duration_ms AS INTEGER)))), 0
FROM invocations GROUP BY function, started_at / 60000;
