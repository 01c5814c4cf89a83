-- Issue 12: how many destination hops led to an asynchronous invocation (0: a caller made
-- it), so a chain of destinations is cut after 16 hops even when it loops. The cut one
-- ends dead with dead_reason 'destination_hops_exceeded', without an attempt.
ALTER TABLE async_invocations ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
