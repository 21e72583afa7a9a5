//! `nsnet ps` and `nsnet logs`: the processes topology files run in nodes.

use std::io::Write;

use nsnet::{Nsnet, Result};

use super::output::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// List the processes topology files run in nodes (`run = [...]`)
    Ps {
        /// Only this node's
        node: Option<String>,
    },
    /// Print the output of a node's processes
    Logs {
        /// The node (a namespace)
        node: String,
    },
}

pub fn run(nsnet: &Nsnet, out: &Printer, cmd: &NodeCmd) -> Result<i32> {
    match cmd {
        NodeCmd::Ps { node } => {
            let procs = nsnet.node_processes(node.as_deref());
            if out.json {
                println!("{}", serde_json::to_string_pretty(&procs).expect("JSON"));
                return Ok(0);
            }
            let mut w = std::io::stdout().lock();
            let _ = writeln!(w, "{:<12} {:>7}  {:<8} COMMAND", "NODE", "PID", "STATE");
            for p in &procs {
                let state = if p.running { "running" } else { "exited" };
                let _ = writeln!(w, "{:<12} {:>7}  {state:<8} {}", p.node, p.pid, p.command);
            }
            Ok(0)
        }
        NodeCmd::Logs { node } => {
            let procs = nsnet.node_processes(Some(node));
            if procs.is_empty() {
                eprintln!("nsnet: node {node} runs no process of a topology file");
                return Ok(3);
            }
            let mut w = std::io::stdout().lock();
            for p in &procs {
                if procs.len() > 1 {
                    let _ = writeln!(w, "==> {} <==", p.command);
                }
                let text = std::fs::read(&p.log).unwrap_or_default();
                let _ = w.write_all(&text);
            }
            Ok(0)
        }
    }
}
