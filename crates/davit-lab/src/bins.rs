//! Finding (or building) the static binaries that go into `FROM scratch` images.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The target whose static-pie binaries run in an empty image.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Whether the ELF file at `path` needs no dynamic loader (no `PT_INTERP` segment).
pub fn is_static_elf(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|data| davit_image::is_static_elf(&data))
}

/// The workspace root this crate was built from, when it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .parent()?
        .to_path_buf();
    root.join("Cargo.toml").is_file().then_some(root)
}

/// Where `cargo` puts the static build of the workspace.
pub fn static_target_dir(root: &Path) -> PathBuf {
    root.join("target").join("static")
}

/// Finds a static build of the workspace binary `name` (e.g. `davit-demo`):
/// 1. `$DAVIT_DEMO_BIN` style variable (`name` upper-cased, `-` as `_`, then `_BIN`);
/// 2. a static file named `name` beside the running executable (or one level up);
/// 3. a static release build in the workspace, made now with cargo if needed.
pub fn static_binary(name: &str) -> Result<PathBuf, Error> {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        if !is_static_elf(&p) {
            return Err(Error::Invalid(format!(
                "${var} = {} is not a static executable",
                p.display()
            )));
        }
        return Ok(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let p = dir.join(name);
            if is_static_elf(&p) {
                return Ok(p);
            }
        }
    }
    let Some(root) = workspace_root() else {
        return Err(Error::Invalid(format!(
            "no static `{name}` binary found: set ${var}, or put a static build of it beside davit"
        )));
    };
    build_static(&root, &[package_of(name)])?;
    let p = static_target_dir(&root)
        .join(STATIC_TARGET)
        .join("release")
        .join(name);
    if is_static_elf(&p) {
        Ok(p)
    } else {
        Err(Error::Invalid(format!(
            "cargo built {} but it is not static",
            p.display()
        )))
    }
}

/// The workspace package whose binary is `name` (the proxy's binary lives in `davit-proxy-bin`, since
/// the library crate holds the name `davit-proxy`).
pub fn package_of(name: &str) -> &str {
    match name {
        "davit-proxy" => "davit-proxy-bin",
        other => other,
    }
}

/// Runs the static release build of the given workspace packages.
pub fn build_static(root: &Path, packages: &[&str]) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--locked", "--target", STATIC_TARGET])
        .env("CARGO_TARGET_DIR", static_target_dir(root))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // As tests/setup.sh builds them (the same settings, or each build undoes the other's).
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for p in packages {
        cmd.args(["-p", p]);
    }
    crate::sys::run(&mut cmd).map(|_| ())
}
