//! OWO's eBPF programs, written in C (`src/*.bpf.c`, `src/*.bpf.h`) against the ABI in
//! `include/owo_abi.h`, compiled by clang in `build.rs` and embedded here as one object.

/// Keeps the object 8-byte aligned, as the ELF parser in the loader expects.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/owo.bpf.o")));

/// The compiled eBPF object (ELF, with BTF for CO-RE relocation).
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

/// Where the C sources and the ABI header live, for tests that compile against them.
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
