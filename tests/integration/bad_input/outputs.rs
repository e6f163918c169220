//! Bad input: output paths and stores: nothing lost, nothing half-written, read-only stores readable.
