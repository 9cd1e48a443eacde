//! The `palisade` binary; everything lives in [`palisade::cli`].

fn main() -> std::process::ExitCode {
    palisade::cli::main()
}
