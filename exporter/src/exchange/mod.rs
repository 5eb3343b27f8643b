//! Exchange stage (in progress).
