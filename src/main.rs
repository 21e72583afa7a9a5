//! The `nsnet` command: a thin front end over the library.

mod cli;
mod demo;
mod exec;
mod output;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let json = args.json;
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            e.exit_code()
        }
    };
    std::process::exit(code);
}
