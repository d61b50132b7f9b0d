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
