//! Compiles the C eBPF programs with clang into one object that `owo-ebpf` embeds.

use std::{
    env,
    path::{Path, PathBuf},
    process::{exit, Command},
};

/// One line that says what is missing, then stop: a build log full of noise helps nobody.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=include");

    let (target_arch, multiarch) = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => ("x86", "x86_64-linux-gnu"),
        Ok("aarch64") => ("arm64", "aarch64-linux-gnu"),
        Ok(other) => fail(&format!(
            "owo-ebpf does not know the BPF target for `{other}` yet"
        )),
        Err(_) => fail("cargo did not set CARGO_CFG_TARGET_ARCH"),
    };
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail("libbpf headers not found (/usr/include/bpf/bpf_helpers.h): install them with `apt-get install libbpf-dev`");
    }
    let asm_dir = format!("/usr/include/{multiarch}");

    // Two builds of the same source: with bpf_loop (Linux 5.17 and later), and with bounded
    // loops for older kernels (`OWO_BOUNDED_LOOPS`, see src/path.bpf.h). owod picks one at load.
    for (object, defines) in [
        ("owo.bpf.o", &[][..]),
        ("owo-bounded.bpf.o", &["-DOWO_BOUNDED_LOOPS"][..]),
    ] {
        let status = Command::new(&clang)
            .args(["-g", "-O2", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-D__TARGET_ARCH_{target_arch}"))
            .args(defines)
            .arg("-I")
            .arg(manifest.join("include"))
            .arg("-I")
            .arg(&asm_dir)
            .arg("-c")
            .arg(manifest.join("src/owo.bpf.c"))
            .arg("-o")
            .arg(out.join(object))
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => fail(&format!(
                "clang failed to compile the eBPF programs ({object}, {status})"
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => fail(&format!(
                "`{clang}` not found: install clang with `apt-get install clang libbpf-dev`"
            )),
            Err(err) => fail(&format!("could not run `{clang}`: {err}")),
        }
    }
}
