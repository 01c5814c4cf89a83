-- Issue 16: the microvm isolation tier. A cold start in a virtual machine has two more
-- parts, both within init_runtime_ms: booting the guest kernel up to its agent's
-- readiness, or restoring a guest saved after its boot up to its first answer (ms). NULL
-- for starts that were not a virtual machine's (the process tier, and every row before).
ALTER TABLE invocations ADD COLUMN init_boot_ms REAL;
ALTER TABLE invocations ADD COLUMN init_restore_ms REAL;
