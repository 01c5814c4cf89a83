-- Issue 14: layers. Each version of a layer is a package (stored like a function's, by
-- hash) with the runtimes that may use it and, when it installs dependencies, the cache
-- key of the installed set and the installer's output. A function version lists its
-- layers in order; the list goes with the version.
CREATE TABLE layer_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    runtimes TEXT NOT NULL,       -- JSON list of runtime names
    package_sha256 TEXT NOT NULL REFERENCES packages (sha256),
    deps_key TEXT,
    build_log TEXT,
    created_at INTEGER NOT NULL,  -- Unix ms
    PRIMARY KEY (name, version)
) STRICT;
CREATE TABLE function_version_layers (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    layer TEXT NOT NULL,
    layer_version INTEGER NOT NULL,
    PRIMARY KEY (function, version, position),
    FOREIGN KEY (function, version) REFERENCES function_versions (function, version) ON DELETE CASCADE
) STRICT;
CREATE INDEX function_version_layers_by_layer ON function_version_layers (layer, layer_version);
