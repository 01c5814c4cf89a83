//! Tests of package paths, zip reading (links, devices, bombs) and handler resolution.

use std::io::Write;

use super::*;

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, content) in entries {
        w.start_file(*name, options).expect("start");
        w.write_all(content).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

fn code(e: Result<Package, PackageError>) -> &'static str {
    e.expect_err("refused").code
}

#[test]
fn relative_paths_pass_and_escaping_ones_are_refused() {
    for ok in ["app.py", "hello_world/app.py", "a/b/c.txt", ".env", "x..y"] {
        assert_eq!(check_path(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a\0b",
        "a\nb",
    ] {
        assert_eq!(
            check_path(bad).expect_err(bad).code,
            "invalid_package_path",
            "{bad:?}"
        );
    }
    let deep = vec!["d"; MAX_DEPTH + 1].join("/");
    assert!(check_path(&deep).is_err());
}

#[test]
fn a_zip_round_trips_with_the_same_hash() {
    let bytes = zip_of(&[("b/app.py", b"x = 1\n"), ("a.py", b"")]);
    let p = Package::from_zip(&bytes).expect("reads");
    let paths: Vec<&str> = p.files().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a.py", "b/app.py"]);
    let again = Package::from_zip(&p.to_zip().expect("writes")).expect("reads back");
    assert_eq!(again, p);
    let same = Package::new(vec![
        ("a.py".into(), vec![]),
        ("b/app.py".into(), b"x = 1\n".to_vec()),
    ])
    .expect("files");
    assert_eq!(
        same.sha256(),
        p.sha256(),
        "files and zip of the same content share a hash"
    );
    assert_eq!(
        manifest_sha256(p.files().iter().map(|f| (f.path.as_str(), f.sha256.as_str()))),
        p.sha256()
    );
    let other = Package::new(vec![("a.py".into(), b"1".to_vec())]).expect("files");
    assert_ne!(other.sha256(), p.sha256());
}

#[test]
fn zip_entries_that_escape_are_refused() {
    assert_eq!(
        code(Package::from_zip(&zip_of(&[("../evil.py", b"x")]))),
        "invalid_package_path"
    );
    assert_eq!(
        code(Package::from_zip(&zip_of(&[("/etc/evil", b"x")]))),
        "invalid_package_path"
    );
    assert_eq!(
        code(Package::from_zip(&zip_of(&[("a/../../b", b"x")]))),
        "invalid_package_path"
    );
}

#[test]
fn links_and_devices_are_refused() {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_symlink("link", "/etc/passwd", zip::write::SimpleFileOptions::default())
        .expect("symlink");
    let bytes = w.finish().expect("finish").into_inner();
    assert_eq!(code(Package::from_zip(&bytes)), "unsupported_zip_entry");

    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // A character device's mode (S_IFCHR).
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o020_644);
    w.start_file("dev", options).expect("start");
    let bytes = w.finish().expect("finish").into_inner();
    let refused = Package::from_zip(&bytes);
    // The writer may keep only permission bits; then it is a plain empty file.
    if let Err(e) = &refused {
        assert_eq!(e.code, "unsupported_zip_entry");
    }
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    // 4 MiB of zeros deflate to a few KiB; the limit is lowered to 1 MiB to keep the
    // test fast (the real one is 250 MiB). The header's size is honest here; the next
    // test covers a header that lies.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    w.start_file("zeros", options).expect("start");
    let chunk = vec![0u8; 1024 * 1024];
    for _ in 0..4 {
        w.write_all(&chunk).expect("write");
    }
    let bytes = w.finish().expect("finish").into_inner();
    assert!(bytes.len() < 64 * 1024, "the bomb is small: {}", bytes.len());
    assert_eq!(
        code(Package::from_zip_within(&bytes, 1024 * 1024)),
        "package_too_large"
    );
    assert!(Package::from_zip_within(&bytes, 8 * 1024 * 1024).is_ok());
}

#[test]
fn a_zip_whose_headers_understate_its_size_still_stops_at_the_limit() {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("zeros", options).expect("start");
    w.write_all(&vec![0u8; 2 * 1024 * 1024]).expect("write");
    let mut bytes = w.finish().expect("finish").into_inner();
    // Rewrite the uncompressed size (4 bytes at offset 22 of the local header, 24 of the
    // central one) to claim 10 bytes.
    let lie = 10u32.to_le_bytes();
    bytes[22..26].copy_from_slice(&lie);
    let central = bytes
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("central directory");
    bytes[central + 24..central + 28].copy_from_slice(&lie);
    let refused = Package::from_zip_within(&bytes, 1024 * 1024).expect_err("refused");
    // Either the limit stops it or the reader notices the lie; never a 2 MiB file.
    assert!(
        matches!(refused.code, "package_too_large" | "invalid_zip"),
        "{refused:?}"
    );
}

#[test]
fn garbage_is_not_a_zip_and_clashes_are_refused() {
    assert_eq!(code(Package::from_zip(b"not a zip")), "invalid_zip");
    let clash = Package::new(vec![("a".into(), vec![]), ("a/b".into(), vec![])]);
    assert_eq!(code(clash), "invalid_package_path");
    assert_eq!(code(Package::new(vec![])), "invalid_package_path");
    let many = (0..=MAX_FILES).map(|i| (format!("f{i}"), vec![])).collect();
    assert_eq!(code(Package::new(many)), "too_many_files");
}

#[test]
fn handlers_resolve_as_lambda_finds_them() {
    let files = [
        "app.py",
        "hello_world/app.py",
        "pkg/__init__.py",
        "index.mjs",
        "src/lambda.ts",
        "src/lambda.js",
    ];
    let has = |p: &str| files.contains(&p);
    let py = |h: &str| resolve_handler(Runtime::Python, h, has);
    assert_eq!(py("app.lambda_handler").expect("ok").file, "app.py");
    let e = py("hello_world/app.lambda_handler").expect("ok");
    assert_eq!(
        (e.file.as_str(), e.function.as_str()),
        ("hello_world/app.py", "lambda_handler")
    );
    assert_eq!(py("pkg.handler").expect("ok").file, "pkg/__init__.py");
    assert_eq!(
        py("hello_world.app.handler").expect("ok").file,
        "hello_world/app.py"
    );
    assert!(py("missing.handler").expect_err("no file").contains("missing.py"));
    assert!(py("handler").is_err());
    assert!(py("../app.handler").is_err());
    assert!(py("app.1x").is_err());
    let js = |h: &str| resolve_handler(Runtime::Javascript, h, has);
    assert_eq!(js("index.handler").expect("ok").file, "index.mjs");
    assert_eq!(js("src/lambda.handler").expect("ok").file, "src/lambda.js");
    let ts = resolve_handler(Runtime::Typescript, "src/lambda.handler", has).expect("ok");
    assert_eq!(ts.file, "src/lambda.ts");
}
