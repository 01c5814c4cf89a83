//! The numeric limits of the platform, in one place so the API, the pool and the docs agree.

/// Largest accepted source file, in bytes.
pub const MAX_CODE_BYTES: usize = 5 * 1024 * 1024;
/// Largest accepted invocation payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest response body a function may return, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// The largest streamed answer (Lambda's response streaming limit).
pub const MAX_STREAMED_BYTES: usize = 20 * 1024 * 1024;
/// Largest total size of a function's environment (keys plus values), in bytes.
pub const MAX_ENV_BYTES: usize = 4 * 1024;
/// Default per-invocation cap on captured log output, in bytes.
pub const DEFAULT_LOG_LIMIT_BYTES: usize = 256 * 1024;

pub const TIMEOUT_SECS: (u32, u32, u32) = (1, 300, 30);
pub const MEMORY_MB: (u32, u32, u32) = (128, 3072, 128);
pub const VCPUS: (u32, u32, u32) = (1, 32, 1);
pub const MAX_INSTANCES: (u32, u32, u32) = (1, 1000, 10);
pub const MIN_INSTANCES: (u32, u32, u32) = (0, 1000, 0);
pub const CONCURRENCY: (u32, u32, u32) = (1, 1000, 1);
/// Zero stops an instance as soon as it has nothing to do (a fresh sandbox per call).
pub const IDLE_TIMEOUT_SECS: (u32, u32, u32) = (0, 86_400, 300);

/// Requests waiting for an instance of one function beyond this many are throttled at once.
pub const MAX_QUEUED_PER_FUNCTION: usize = 1000;

/// Largest accepted asynchronous invocation payload, in bytes (it is stored until it runs).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;
/// How long an idempotency key is remembered, in seconds.
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Deepest nesting of arrays and objects accepted in an event (invoke, asynchronous invoke,
/// a function URL's JSON body, saved test events). As System.Text.Json's default: deep
/// enough for any real document, shallow enough for every runtime's JSON reader.
pub const MAX_EVENT_DEPTH: usize = 64;
/// Deepest nesting of arrays and objects a handler may return. The server reads return
/// values with a reader that stops at 128 levels; this limit is checked before it, so that
/// a deeper value fails only its own call.
pub const MAX_RESPONSE_DEPTH: usize = 100;
