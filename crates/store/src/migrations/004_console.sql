-- Issue 6: why a version failed to load, for the editor to mark its line, and the test
-- events saved per function.
ALTER TABLE function_versions ADD COLUMN status_detail TEXT; -- JSON {type, message, line}

CREATE TABLE test_events (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    event TEXT NOT NULL,          -- JSON
    updated_at INTEGER NOT NULL,  -- Unix ms
    PRIMARY KEY (function, name)
) STRICT;
