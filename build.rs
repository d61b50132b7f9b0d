//! Gives the shared library a soname, so programs linked against it record
//! `libqueue_listener.so.<compat>` and survive compatible upgrades.
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
}
