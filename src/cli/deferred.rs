//! A command line parsed with only the invoked subcommand built. clap's
//! derive builds every argument of every subcommand on each start, then
//! copies each global option into every subcommand (about 0.3 ms of a
//! 1 ms `nsnet --version`, a third of it page faults of the allocations),
//! which one process per attachment pays each time. Two parts:
//! - a variant holding `Deferred<T>` keeps its name and help line in the
//!   command tree and builds `T`'s arguments through
//!   `clap::Command::defer`, when the variant is parsed or its help printed;
//! - `parse` finds the subcommand's name and parses with a tree that has
//!   that subcommand alone; anything else (help, version, a mistake, a name
//!   it does not know) goes to clap's full parse, for its usual messages.

use std::ffi::OsString;

use clap::{ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};

use super::{Cli, GlobalOptions};

/// The command line of this process.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    parse_invoked_only(&args).unwrap_or_else(|| Cli::parse_from(args))
}

/// `args` parsed with a tree holding only the subcommand they name; `None`
/// when that cannot be told or clap has something to say.
fn parse_invoked_only(args: &[OsString]) -> Option<Cli> {
    let root = GlobalOptions::augment_args(Command::new("nsnet"));
    let name = subcommand_name(&root, args)?;
    let all = <super::Command as Subcommand>::augment_subcommands(Command::new("nsnet"));
    let invoked = all.find_subcommand(name)?.clone();
    let matches = root
        .subcommand(invoked)
        .subcommand_required(true)
        .try_get_matches_from(args)
        .ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// The first word of `args` that is neither an option of `root` nor an
/// option's value. `None` at anything else: an option `root` does not
/// have, `--`, a word that is not UTF-8.
fn subcommand_name<'a>(root: &Command, args: &'a [OsString]) -> Option<&'a str> {
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let word = word.to_str()?;
        if let Some(long) = word.strip_prefix("--") {
            let (long, value) = match long.split_once('=') {
                Some((long, _)) => (long, true),
                None => (long, false),
            };
            let arg = root.get_arguments().find(|a| a.get_long() == Some(long))?;
            if arg.get_action().takes_values() && !value {
                words.next();
            }
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            for c in shorts.chars() {
                let arg = root.get_arguments().find(|a| a.get_short() == Some(c))?;
                if arg.get_action().takes_values() {
                    return None;
                }
            }
        } else {
            return Some(word);
        }
    }
    None
}

#[derive(Debug)]
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

/// A variant's arguments (`Impair(Deferred<ImpairArgs>)`).
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

    fn argv(words: &str) -> Vec<std::ffi::OsString> {
        words.split(' ').map(Into::into).collect()
    }

    #[test]
    fn the_invoked_subcommand_alone_parses_as_the_whole_tree_does() {
        for words in [
            "nsnet connect net a b --ip 10.0.0.2/24 -p 8080:80 -q",
            "nsnet -v show",
            "nsnet show net --json",
            "nsnet --state-dir /x network create n --subnet 10.0.0.0/24",
            "nsnet --state-dir=/x --json network ls",
            "nsnet --color never check --repair",
            "nsnet -q --json connect net a",
            "nsnet exec ns1 -- ping -c 1 10.0.0.1",
            "nsnet exec ns1 ip -v addr",
            "nsnet impair r1:eth1 --delay 20ms -q",
            "nsnet disconnect net a b c",
            "nsnet up -f lab.toml --dry-run",
            "nsnet agent --etcd http://192.0.2.1:2379",
            "nsnet ns ls",
        ] {
            let args = argv(words);
            let whole = Cli::try_parse_from(&args).expect(words);
            let invoked_only = super::parse_invoked_only(&args).expect(words);
            assert_eq!(format!("{invoked_only:?}"), format!("{whole:?}"), "{words}");
        }
    }

    #[test]
    fn help_version_and_mistakes_are_left_to_the_whole_tree() {
        for words in [
            "nsnet --version",
            "nsnet --help",
            "nsnet help connect",
            "nsnet connect --help",
            "nsnet connect",
            "nsnet bogus",
            "nsnet --state-dir",
            "nsnet --nope show",
            "nsnet show a b",
            "nsnet -v -q show",
            "nsnet -qv connect net a",
        ] {
            assert!(super::parse_invoked_only(&argv(words)).is_none(), "{words}");
            assert!(Cli::try_parse_from(argv(words)).is_err(), "{words}");
        }
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
        assert!(cli.options.quiet);
        let help = Cli::try_parse_from(["nsnet", "impair", "--help"])
            .expect_err("help is an early exit")
            .to_string();
        assert!(
            help.contains("--delay") && help.contains("Examples:"),
            "{help}"
        );
        let wrong = Cli::try_parse_from(["nsnet", "network", "create", "n", "--subnett", "x"])
            .expect_err("an unknown option is refused")
            .to_string();
        assert!(wrong.contains("--subnett"), "{wrong}");
    }
}
