//! The user-space half of OWO's kernel/user contract: the `#[repr(C)]` mirror of
//! `ebpf/include/owo_abi.h` ([`abi`]), the typed events ([`event`]), the pure decoder from ring
//! buffer bytes to events ([`decode`]), and the JSON rendering rules ([`render`]).
//! Nothing here needs root or a kernel, so all of it is tested (and fuzzable) anywhere.

pub mod abi;
pub mod decode;
pub mod dns;
pub mod encode;
pub mod event;
pub mod render;

pub use decode::{decode, DecodeError};
pub use event::Event;
