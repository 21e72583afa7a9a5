//! Subcommands whose arguments clap builds only when they are the one
//! invoked. The derive builds every argument of every subcommand on each
//! start (about 0.3 ms of a 1 ms `nsnet --version`, a third of which is
//! page faults of the allocations), which one process per attachment pays
//! each time. A variant holding `Deferred<T>` keeps its name and help line
//! in the command tree and builds `T`'s arguments through
//! `clap::Command::defer`, when the variant is parsed or its help printed.

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};

pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

/// A variant's arguments (`Connect(Deferred<ConnectArgs>)`).
impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: Command) -> Command {
        cmd.defer(T::augment_args)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.defer(T::augment_args_for_update)
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

/// A variant's own subcommands (`#[command(subcommand)]
/// Network(Deferred<NetworkCmd>)`).
impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        cmd.defer(T::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        cmd.defer(T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::super::{Cli, Command, NetworkCmd};
    use super::Deferred;

    #[test]
    fn the_definitions_hold_once_every_deferred_part_is_built() {
        // Builds every subcommand, deferred ones included, and checks
        // names, conflicts and defaults as clap's debug build would.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_deferred_subcommand_parses_and_helps_as_before() {
        let cli =
            Cli::try_parse_from(["nsnet", "network", "create", "n", "--subnet", "10.9.0.0/24"])
                .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Network(Deferred(NetworkCmd::Create { .. }))
        ));
        // A global option after the deferred subcommand is still taken.
        let cli = Cli::try_parse_from(["nsnet", "impair", "r1:eth1", "--delay", "20ms", "-q"])
            .expect("parses");
        assert!(cli.quiet);
        let help = Cli::try_parse_from(["nsnet", "impair", "--help"])
            .err()
            .expect("help is an early exit")
            .to_string();
        assert!(
            help.contains("--delay") && help.contains("Examples:"),
            "{help}"
        );
        let wrong = Cli::try_parse_from(["nsnet", "network", "create", "n", "--subnett", "x"])
            .err()
            .expect("an unknown option is refused")
            .to_string();
        assert!(wrong.contains("--subnett"), "{wrong}");
    }
}
