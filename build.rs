//! Lays out the release binary's code: the functions a service runs when it starts, idles and
//! delivers go first and together (`benches/layout/symbols.txt`, made by
//! `benches/layout/run.sh`), handed to the linker as LLD's `--symbol-ordering-file`.
//!
//! Why: the kernel maps a program's code 64 KiB at a time around each page that runs (fault-
//! around), and in the order the compiler left them, the functions an idle service had run
//! were spread over its 14 MB of code: 11.6-12.2 MiB of it was resident, three fifths of an
//! idle service's memory. Packed together they are about 5 MiB (README, Performance, "The
//! code a service runs, together"). A symbol the file names that the binary does not have
//! (a dependency upgraded, a function renamed) is passed over without a word, and that
//! function is placed as without the file: a stale file costs memory, never a build.
//!
//! Only for the release profile on x86_64 Linux with a toolchain that links with its own LLD
//! (rustup's, since Rust 1.90: `gcc-ld/ld.lld` in its sysroot), and not when the build names a
//! linker of its own (`-C linker=…` or `-fuse-ld=…` in RUSTFLAGS, a `linker` in Cargo's
//! configuration), which may not know the option, or sets `HMS_SYNC_CODE_LAYOUT=off`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let layout = Path::new("benches/layout/symbols.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", layout.display());
    println!("cargo:rerun-if-env-changed=HMS_SYNC_CODE_LAYOUT");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let own_linker = env::var_os("RUSTC_LINKER").is_some() || env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("linker") || f.contains("fuse-ld"));
    let off = env::var("HMS_SYNC_CODE_LAYOUT").is_ok_and(|v| v == "off");
    if release && target && !own_linker && !off && layout.exists() && rustc_links_with_lld() {
        let path = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join(layout);
        println!("cargo:rustc-link-arg-bin=hms-sync=-Wl,--symbol-ordering-file={}", path.display());
        println!("cargo:rustc-link-arg-bin=hms-sync=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the toolchain brings the LLD it links x86_64 Linux programs with (a distribution's
/// rustc may be built without it, and then links with the system's `ld`).
fn rustc_links_with_lld() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else { return false };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld").exists()
}
