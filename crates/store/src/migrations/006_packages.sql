-- Issue 14: code packages. A function version made of several files references its
-- package by hash; a package lists its files (path, size, hash); each file's content is
-- stored once per hash, whichever packages hold it. The unpacked copies under
-- <data>/packages are a cache rebuilt from these tables.
CREATE TABLE package_blobs (
    sha256 TEXT PRIMARY KEY,
    content BLOB NOT NULL
);
CREATE TABLE packages (
    sha256 TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE package_files (
    package TEXT NOT NULL REFERENCES packages (sha256) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL REFERENCES package_blobs (sha256),
    PRIMARY KEY (package, path)
);
CREATE INDEX package_files_by_blob ON package_files (sha256);
ALTER TABLE function_versions ADD COLUMN package_sha256 TEXT REFERENCES packages (sha256);
CREATE INDEX function_versions_by_package ON function_versions (package_sha256);
