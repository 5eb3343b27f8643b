//! Reassembly stage (in progress).
