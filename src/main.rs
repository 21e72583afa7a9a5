//! The `nsnet` command: a thin front end over the library.

mod cli;

/// A closed stdout (`nsnet show | head`) ends the process quietly, as it
/// does `ip` and every C tool: Rust ignores SIGPIPE by default, and every
/// later write would then panic.
fn die_quietly_on_closed_pipes() {
    // SAFETY: called first thing in main, before any thread exists;
    // restoring a signal's default disposition has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    die_quietly_on_closed_pipes();
    // A container runtime runs us as its CNI plugin: stdin and stdout belong
    // to the CNI protocol, there is no command line.
    if std::env::var_os("CNI_COMMAND").is_some() {
        let state_dir = std::env::var("NSNET_STATE_DIR")
            .unwrap_or_else(|_| nsnet::api::live::DEFAULT_STATE_DIR.into());
        // `-v` of the command line: step timings on stderr, which the CNI
        // protocol leaves free for logs.
        nsnet::api::set_verbose(std::env::var_os("NSNET_VERBOSE").is_some());
        let start = std::time::Instant::now();
        let code = nsnet::cni::main(&nsnet::Nsnet::new(state_dir));
        nsnet::api::phase("the whole CNI call", start);
        std::process::exit(code);
    }
    // netavark runs us as its plugin `nsnet`: `info`, `create`, `setup
    // NETNS` or `teardown NETNS`, JSON on stdin and stdout.
    let argv: Vec<String> = std::env::args().collect();
    if nsnet::netavark::is_plugin_call(&argv) {
        let state_dir = std::env::var("NSNET_STATE_DIR")
            .unwrap_or_else(|_| nsnet::api::live::DEFAULT_STATE_DIR.into());
        let code = nsnet::netavark::main(&nsnet::Nsnet::new(state_dir), &argv);
        std::process::exit(code);
    }
    let start = std::time::Instant::now();
    let args = cli::parse();
    let json = args.options.json;
    let result = cli::run(args);
    // With -v: what `main` spent, from the command line's parsing to the
    // drop of everything the command made (the rest of a process's time is
    // starting and exiting).
    nsnet::api::phase("the whole command", start);
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            cli::output::error(&e, json);
            e.exit_code()
        }
    };
    std::process::exit(code);
}
