//! What the stages share about records on their way: the lane merge, which puts the two ring
//! buffers' events back in kernel-time order before anything looks at them.

pub mod merge;
