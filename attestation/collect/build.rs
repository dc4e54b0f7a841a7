//! Build script. Does nothing unless the `tdx-attest-lib` feature is on; then
//! it runs bindgen on Intel's `tdx_attest.h` and links `libtdx_attest`.
//!
//! Environment:
//! - `TDX_ATTEST_INCLUDE_DIR`: directory holding `tdx_attest.h` (default `/usr/include`);
//! - `TDX_ATTEST_LIB_DIR`: extra library search path for `libtdx_attest`;
//! - `TDX_ATTEST_FAKE`: set by `tests/tdx-attest-fake/run.sh` when linking the
//!   test fake, which enables the tests that call its introspection hooks.
//!
//! bindgen needs libclang (Debian: `apt-get install libclang-dev`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tdx_attest_fake)");
    #[cfg(feature = "tdx-attest-lib")]
    tdx_attest::generate();
}

#[cfg(feature = "tdx-attest-lib")]
mod tdx_attest {
    use std::env;
    use std::path::PathBuf;

    pub(crate) fn generate() {
        for var in [
            "TDX_ATTEST_INCLUDE_DIR",
            "TDX_ATTEST_LIB_DIR",
            "TDX_ATTEST_FAKE",
        ] {
            println!("cargo::rerun-if-env-changed={var}");
        }
        let include = env::var_os("TDX_ATTEST_INCLUDE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/include"));
        let header = include.join("tdx_attest.h");
        if !header.is_file() {
            fail(&format!(
                "feature tdx-attest-lib: {} not found. Install Intel's libtdx-attest-dev \
                , or set TDX_ATTEST_INCLUDE_DIR to the directory \
                 holding tdx_attest.h; or build without the feature and use configfs-tsm",
                header.display()
            ));
        }
        println!("cargo::rerun-if-changed={}", header.display());
        if let Some(dir) = env::var_os("TDX_ATTEST_LIB_DIR") {
            println!(
                "cargo::rustc-link-search=native={}",
                PathBuf::from(dir).display()
            );
        }
        println!("cargo::rustc-link-lib=tdx_attest");
        if env::var_os("TDX_ATTEST_FAKE").is_some() {
            println!("cargo::rustc-cfg=tdx_attest_fake");
        }

        let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
            fail("OUT_DIR is not set");
        };
        let bindings = bindgen::Builder::default()
            .header(header.to_string_lossy())
            .clang_arg(format!("-I{}", include.display()))
            .allowlist_function("tdx_att_get_quote")
            .allowlist_function("tdx_att_free_quote")
            .allowlist_type("tdx_report_data_t")
            .allowlist_type("tdx_uuid_t")
            .allowlist_type("tdx_attest_error_t")
            .rust_edition(bindgen::RustEdition::Edition2024)
            .generate_comments(false)
            .layout_tests(true)
            .generate();
        let bindings = match bindings {
            Ok(bindings) => bindings,
            Err(e) => fail(&format!("bindgen on {}: {e}", header.display())),
        };
        let out = out_dir.join("tdx_attest_bindings.rs");
        if let Err(e) = bindings.write_to_file(&out) {
            fail(&format!("writing {}: {e}", out.display()));
        }
    }

    fn fail(message: &str) -> ! {
        eprintln!("error: {message}");
        println!("cargo::warning={message}");
        std::process::exit(1)
    }
}
