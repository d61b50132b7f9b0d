//! The committed C header must equal what cbindgen generates from the
//! sources now. `QL_BLESS_HEADER=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = root.join("include/queue_listener.h");
    if std::env::var_os("QL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/queue_listener.h differs from what cbindgen generates; \
         run `QL_BLESS_HEADER=1 cargo test --test header` and commit it"
    );
}

/// Every name the header gives C starts with `ql_` or `QL_` (the include
/// guards aside), so nothing clashes with a program's own names.
#[test]
fn every_exported_name_has_the_ql_prefix() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/queue_listener.h")).expect("header");
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("#define ") {
            names.push(rest.split([' ', '(']).next().unwrap_or(""));
            continue;
        }
        // Declarations start at column 0 with an identifier (types,
        // functions); closing lines of typedef'd structs start with "} ".
        let starts_decl = line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if let Some(rest) = line.strip_prefix("} ") {
            if rest.ends_with(';') {
                names.push(rest.trim_end_matches(';'));
            }
        } else if starts_decl && !line.starts_with("extern") && !line.ends_with('{') {
            if let Some(open) = line.find('(') {
                let before = &line[..open];
                let name = before.rsplit([' ', '*']).next().unwrap_or("");
                names.push(name);
            } else if let Some(rest) = line.strip_prefix("typedef ") {
                names.push(rest.trim_end_matches(';').rsplit(' ').next().unwrap_or(""));
            }
        }
    }
    let guards = ["QUEUE_LISTENER_H", "QUEUE_LISTENER_LOGF_H"];
    let bad: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !n.is_empty() && !guards.contains(n))
        .filter(|n| !(n.starts_with("ql_") || n.starts_with("QL_")))
        .collect();
    assert!(
        names.len() > 50,
        "found only {} names: {names:?}",
        names.len()
    );
    assert!(bad.is_empty(), "names without the ql_/QL_ prefix: {bad:?}");
}
