fn main() -> std::process::ExitCode {
    vireo::cli::main()
}
