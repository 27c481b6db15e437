fn main() {
    std::process::exit(synth::cli::main());
}
