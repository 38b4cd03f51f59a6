//! `trailguard`: see [`trailguard::cli`].

fn main() -> std::process::ExitCode {
    trailguard::cli::main()
}
