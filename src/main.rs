//! The `gavat` binary: everything lives in the library's `cli` module.

/// mimalloc: a simulation allocates and frees two small actix envelopes per message; the
/// system allocator spends measurably more time on them (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gavat::cli::main()
}
