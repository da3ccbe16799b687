//! OWO's eBPF programs, written in C (`src/*.bpf.c`, `src/*.bpf.h`) against the ABI in
//! `include/owo_abi.h`, compiled by clang in `build.rs` and embedded here, in two builds of the
//! same source that differ only in how their loops run (see [`Loops`]).

/// Keeps the object 8-byte aligned, as the ELF parser in the loader expects.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static BPF_LOOP: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/owo.bpf.o")));
static BOUNDED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/owo-bounded.bpf.o"
)));

/// How the path walks and scans of the programs loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loops {
    /// The `bpf_loop` helper (Linux 5.17 and later): the verifier checks one step of each loop,
    /// so a path is walked up to 1024 components.
    BpfLoop,
    /// Bounded loops, for kernels without `bpf_loop`: a path is walked up to 80 components;
    /// a deeper one is marked truncated.
    Bounded,
}

impl Loops {
    /// The name owod reports (start record, status).
    pub fn name(self) -> &'static str {
        match self {
            Loops::BpfLoop => "bpf_loop",
            Loops::Bounded => "bounded_loops",
        }
    }
}

/// The compiled eBPF object (ELF, with BTF for CO-RE relocation) of one build.
pub fn object(loops: Loops) -> &'static [u8] {
    match loops {
        Loops::BpfLoop => &BPF_LOOP.0,
        Loops::Bounded => &BOUNDED.0,
    }
}

/// Where the C sources and the ABI header live, for tests that compile against them.
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
