//! Gives the shared library a soname, so programs linked against it record
//! `libqueue_listener.so.<compat>` and survive compatible upgrades, and
//! versions its symbols with it.
//! Before 1.0 a minor version may break the ABI, so the soname carries
//! `0.MINOR`; from 1.0 on it carries `MAJOR`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return;
    }
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    let compat = if major == "0" {
        format!("0.{minor}")
    } else {
        major.to_string()
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libqueue_listener.so.{compat}");
    // Every exported function gets a symbol version, the soname itself
    // (`ql_log@@libqueue_listener.so.0.2`): programs record which ABI each
    // symbol they use comes from. rustc hands the linker its own anonymous
    // version script (the export list), which rust-lld lets take precedence
    // over a second script and GNU ld refuses to combine with a named one;
    // GNU ld's --default-symver versions what that list exports. The static
    // archive is not linked here, so it stays unversioned.
    // Never unmapped by dlclose: the library starts threads (listeners,
    // sinks' senders), registers atexit and pthread-key destructors, and
    // its code must outlive every one of them (issue 13: a dlclose while a
    // listener ran, with a drain at exit registered, crashed).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-cdylib-link-arg=-fuse-ld=bfd");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--default-symver");
}
