//! The `gavat` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    gavat::cli::main()
}
