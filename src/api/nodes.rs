//! Processes in nodes: the `exec` and `run` commands of a topology file.
//! `exec` commands run once, in order, when `up` makes their namespace;
//! `run` commands are long-running processes `up` starts (and starts again
//! when they are gone), `down` stops, and `check` reports when they died.
//! Each runs as `nsnet exec NODE -- sh -c COMMAND` does (the node's
//! network, its `/etc/netns/NODE/` files), in a session of its own, its
//! output in a log under the state directory. What runs is kept in a
//! runtime file per node (`nodes/NODE.json`), not in the record: a pid is
//! known only once the process runs, and a process outlives no
//! namespace (deleting one ends the processes in it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Error, Nsnet, Result};
use crate::model::lab::NodeProcess;
use crate::model::topology::{place_of, FilePlace, FileSource, NodeCommands, Outcome, Topology};
use crate::model::NsRef;

const DIR: &str = "nodes";
/// How long `up` watches the processes it started for an early exit.
const EARLY_EXIT: Duration = Duration::from_millis(300);
/// How long a process `down` stops has after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A node file nsnet wrote: its path in the node, where it is on the host,
/// and the file that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct WrittenFile {
    path: PathBuf,
    host: PathBuf,
    owner: String,
}

/// The directories `nsnet exec NODE` binds from the node's private
/// directory over the host's (one per line), in `nodes/NODE.binds`.
pub fn private_binds(state_dir: &Path, node: &str) -> Vec<(PathBuf, PathBuf)> {
    let root = state_dir.join(DIR).join(format!("{node}.root"));
    std::fs::read_to_string(state_dir.join(DIR).join(format!("{node}.binds")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(|dir| (root.join(&dir[1..]), PathBuf::from(dir)))
        .collect()
}

/// Removes `file`, then its parent directories up to (not including)
/// `stop` while they are empty.
fn remove_pruning(file: &Path, stop: &Path) {
    let _ = std::fs::remove_file(file);
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// A node's process as `ps` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessView {
    pub node: String,
    pub command: String,
    pub pid: i32,
    pub running: bool,
    pub log: PathBuf,
    pub owner: String,
}

/// The environment variable that marks a process `up` started: the file,
/// the node and the command it runs for, so that one whose record was lost
/// (an `up` killed between starting it and recording it) is found again
/// rather than started twice, and stopped by `down`.
const MARK: &str = "NSNET_NODE_PROCESS";

fn owner_mark(owner: &str) -> String {
    format!("{:08x}.", crate::model::names::stable_hash(&[owner]))
}

fn mark_of(owner: &str, node: &str, command: &str) -> String {
    format!(
        "{}{node}.{:08x}",
        owner_mark(owner),
        crate::model::names::stable_hash(&[command])
    )
}

/// Live processes whose mark starts with `prefix`.
fn marked(prefix: &str) -> Vec<i32> {
    let needle = format!("{MARK}={prefix}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|v| v.starts_with(needle.as_bytes()))
            }) && start_of(*pid).is_some()
        })
        .collect()
}

/// The start time (clock ticks since boot) of a live, non-zombie process.
fn start_of(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); the start time is field 22.
    (fields.first() != Some(&"Z"))
        .then(|| fields.get(19)?.parse().ok())
        .flatten()
}

fn alive(p: &NodeProcess) -> bool {
    start_of(p.pid) == Some(p.start)
}

/// SIGTERM, then SIGKILL after the grace period if it is still there.
fn stop(p: &NodeProcess) {
    if alive(p) {
        // Known by pid and start time: a reused pid is never signalled.
        crate::kernel::end_processes(vec![p.pid], STOP_GRACE, || {
            if alive(p) {
                vec![p.pid]
            } else {
                Vec::new()
            }
        });
    }
}

impl Nsnet {
    fn nodes_dir(&self) -> PathBuf {
        self.store.dir().join(DIR)
    }

    fn node_file(&self, node: &str) -> PathBuf {
        self.nodes_dir().join(format!("{node}.json"))
    }

    fn read_node(&self, node: &str) -> Vec<NodeProcess> {
        std::fs::read(self.node_file(node))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes a node's processes (atomically); none: the file goes.
    fn write_node(&self, node: &str, procs: &[NodeProcess]) -> Result<()> {
        let path = self.node_file(node);
        if procs.is_empty() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        let fail = |source| Error::WriteFile {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(self.nodes_dir()).map_err(fail)?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(procs).expect("JSON of processes");
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }

    fn node_root(&self, node: &str) -> PathBuf {
        self.nodes_dir().join(format!("{node}.root"))
    }

    fn read_files(&self, node: &str) -> Vec<WrittenFile> {
        std::fs::read(self.nodes_dir().join(format!("{node}.files.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records the files written for a node, and the private directories
    /// `nsnet exec` binds for it.
    fn record_files(&self, node: &str, files: &[WrittenFile]) -> Result<()> {
        let list = self.nodes_dir().join(format!("{node}.files.json"));
        let binds = self.nodes_dir().join(format!("{node}.binds"));
        if files.is_empty() {
            let _ = std::fs::remove_file(&list);
            let _ = std::fs::remove_file(&binds);
            let _ = std::fs::remove_dir(self.node_root(node));
            return Ok(());
        }
        let root = self.node_root(node);
        let dirs: BTreeSet<String> = files
            .iter()
            .filter_map(|f| match place_of(node, &f.path, &root) {
                FilePlace::Private { dir, .. } => Some(dir.display().to_string() + "\n"),
                FilePlace::Etc { .. } => None,
            })
            .collect();
        let fail = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::WriteFile { path, source }
        };
        std::fs::create_dir_all(self.nodes_dir()).map_err(fail(&list))?;
        let text = serde_json::to_vec_pretty(files).expect("JSON of files");
        std::fs::write(&list, text).map_err(fail(&list))?;
        std::fs::write(&binds, dirs.into_iter().collect::<String>()).map_err(fail(&binds))
    }

    /// Writes the node files of `owner` that `want` lists (where only the
    /// node's processes see them) and removes those it no longer lists.
    fn converge_files(
        &self,
        node: &str,
        want: &std::collections::BTreeMap<PathBuf, FileSource>,
        owner: &str,
    ) -> Result<()> {
        let root = self.node_root(node);
        let etc = Path::new("/etc/netns").join(node);
        let mut kept: Vec<WrittenFile> = Vec::new();
        for f in self.read_files(node) {
            if f.owner != owner {
                kept.push(f);
            } else if !want.contains_key(&f.path) {
                let stop = if f.host.starts_with(&etc) {
                    &etc
                } else {
                    &root
                };
                remove_pruning(&f.host, stop);
            }
        }
        for (path, source) in want {
            let host = write_node_file(node, path, source, &root)?;
            kept.push(WrittenFile {
                path: path.clone(),
                host,
                owner: owner.to_string(),
            });
        }
        self.record_files(node, &kept)
    }

    /// Removes the node files of `owner` (`down`).
    fn remove_file_files(&self, owner: &str) -> Result<()> {
        for node in self.runtime_nodes(".files.json") {
            self.converge_files(&node, &Default::default(), owner)?;
        }
        Ok(())
    }

    /// The nodes with a runtime file named `NODE{suffix}`, sorted.
    fn runtime_nodes(&self, suffix: &str) -> Vec<String> {
        let mut nodes: Vec<String> = std::fs::read_dir(self.nodes_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                // NODE.json is not NODE.files.json's.
                if suffix == ".json" && name.ends_with(".files.json") {
                    return None;
                }
                name.strip_suffix(suffix).map(str::to_string)
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// The nodes that have processes recorded.
    fn nodes_with_processes(&self) -> Vec<String> {
        self.runtime_nodes(".json")
    }

    /// The processes `up` started, of one node or all, and whether each
    /// still runs.
    pub fn node_processes(&self, node: Option<&str>) -> Vec<ProcessView> {
        let nodes = match node {
            Some(n) => vec![n.to_string()],
            None => self.nodes_with_processes(),
        };
        nodes
            .iter()
            .flat_map(|n| {
                self.read_node(n).into_iter().map(move |p| ProcessView {
                    node: n.clone(),
                    running: alive(&p),
                    command: p.command,
                    pid: p.pid,
                    log: p.log,
                    owner: p.owner,
                })
            })
            .collect()
    }

    /// What `converge_files` would change in `node`, as lines.
    fn file_changes(
        &self,
        node: &str,
        want: &std::collections::BTreeMap<PathBuf, FileSource>,
        owner: &str,
        lines: &mut Vec<String>,
    ) {
        let root = self.node_root(node);
        for (path, source) in want {
            let host = match place_of(node, path, &root) {
                FilePlace::Etc { host, .. } | FilePlace::Private { host, .. } => host,
            };
            let content = match source {
                FileSource::Text(t) => Some(t.clone().into_bytes()),
                FileSource::Path(p) => std::fs::read(p).ok(),
            };
            if content.is_none() || std::fs::read(&host).ok() != content {
                lines.push(format!("write {} in {node}", path.display()));
            }
        }
        for f in self.read_files(node) {
            if f.owner == owner && !want.contains_key(&f.path) {
                lines.push(format!("remove {} in {node}", f.path.display()));
            }
        }
    }

    /// What `converge_processes` would change, as lines.
    pub(super) fn process_changes(&self, topo: &Topology) -> Vec<String> {
        let mut lines = Vec::new();
        let none = NodeCommands::default();
        for node in self.runtime_nodes(".files.json") {
            if !topo.lab.processes.contains_key(&node) {
                self.file_changes(&node, &none.files, &topo.owner, &mut lines);
            }
        }
        for (node, want) in &topo.lab.processes {
            self.file_changes(node, &want.files, &topo.owner, &mut lines);
            let have = self.read_node(node);
            for cmd in &want.run {
                let runs = have.iter().any(|p| &p.command == cmd && alive(p))
                    || !marked(&mark_of(&topo.owner, node, cmd)).is_empty();
                if !runs {
                    lines.push(format!("run in {node}: {cmd}"));
                }
            }
        }
        for node in self.nodes_with_processes() {
            let want = topo.lab.processes.get(&node);
            for p in self.read_node(&node) {
                let wanted = want.is_some_and(|w| w.run.contains(&p.command));
                if p.owner == topo.owner && !wanted && alive(&p) {
                    lines.push(format!("stop in {node}: {}", p.command));
                }
            }
        }
        lines
    }

    /// Makes the file's processes run: its `exec` commands in the nodes
    /// `fresh` (made by this `up`), then each `run` command that does not
    /// run; stops the file's processes it no longer asks for. A process
    /// that exits at once is an error naming its log.
    pub(super) fn converge_processes(
        &self,
        topo: &Topology,
        fresh: &BTreeSet<String>,
    ) -> Result<()> {
        for node in self.nodes_with_processes() {
            if !topo.lab.processes.contains_key(&node) {
                self.stop_processes_of(&node, &topo.owner, &[])?;
            }
        }
        for node in self.runtime_nodes(".files.json") {
            if !topo.lab.processes.contains_key(&node) {
                self.converge_files(&node, &Default::default(), &topo.owner)?;
            }
        }
        let mut started: Vec<(String, String, PathBuf, Child)> = Vec::new();
        for (node, want) in &topo.lab.processes {
            self.converge_files(node, &want.files, &topo.owner)?;
            if fresh.contains(node) {
                for cmd in &want.exec {
                    run_once(node, cmd, &topo.owner, self.store.dir())?;
                }
            }
            self.stop_processes_of(node, &topo.owner, &want.run)?;
            started.extend(self.start_missing(node, want, &topo.owner)?);
        }
        if started.is_empty() {
            return Ok(());
        }
        std::thread::sleep(EARLY_EXIT);
        for (node, command, log, mut child) in started {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::NodeProcessExited {
                    node,
                    command,
                    status: status.to_string(),
                    log,
                });
            }
        }
        Ok(())
    }

    /// Stops the processes of `owner` in `node` that are not in `keep`.
    fn stop_processes_of(&self, node: &str, owner: &str, keep: &[String]) -> Result<()> {
        let (gone, stay): (Vec<NodeProcess>, Vec<NodeProcess>) = self
            .read_node(node)
            .into_iter()
            .partition(|p| p.owner == owner && !keep.contains(&p.command));
        for p in &gone {
            stop(p);
        }
        self.write_node(node, &stay)
    }

    /// Starts the `run` commands of `want` that do not run in `node`.
    fn start_missing(
        &self,
        node: &str,
        want: &NodeCommands,
        owner: &str,
    ) -> Result<Vec<(String, String, PathBuf, Child)>> {
        let mut procs: Vec<NodeProcess> = self
            .read_node(node)
            .into_iter()
            .filter(|p| alive(p) || p.owner != owner)
            .collect();
        let mut started = Vec::new();
        for (k, cmd) in want.run.iter().enumerate() {
            if procs.iter().any(|p| &p.command == cmd && alive(p)) {
                continue;
            }
            let log = self.nodes_dir().join(format!("{node}.{k}.log"));
            let mark = mark_of(owner, node, cmd);
            let record = |pid: i32| NodeProcess {
                command: cmd.clone(),
                pid,
                start: start_of(pid).unwrap_or_default(),
                log: log.clone(),
                owner: owner.to_string(),
            };
            procs.retain(|p| &p.command != cmd);
            // Started by an `up` that did not live to record it: taken on.
            if let Some(pid) = marked(&mark).into_iter().next() {
                procs.push(record(pid));
                continue;
            }
            let child = spawn(node, cmd, owner, self.store.dir(), &log, &mark)?;
            procs.push(record(child.id() as i32));
            started.push((node.to_string(), cmd.clone(), log.clone(), child));
        }
        self.write_node(node, &procs)?;
        Ok(started)
    }

    /// Stops every process a file's `up` started, and removes their logs
    /// (`down`: nothing of the file stays).
    pub(super) fn stop_file_processes(&self, owner: &str, out: &mut Outcome) -> Result<()> {
        for node in self.nodes_with_processes() {
            let mine: Vec<NodeProcess> = self
                .read_node(&node)
                .into_iter()
                .filter(|p| p.owner == owner)
                .collect();
            for p in &mine {
                out.changes.push(format!("stop in {node}: {}", p.command));
            }
            self.stop_processes_of(&node, owner, &[])?;
            for p in &mine {
                let _ = std::fs::remove_file(&p.log);
            }
        }
        // Those started by an `up` that did not live to record them.
        for pid in marked(&owner_mark(owner)) {
            if let Some(start) = start_of(pid) {
                stop(&NodeProcess {
                    command: String::new(),
                    pid,
                    start,
                    log: PathBuf::new(),
                    owner: owner.to_string(),
                });
            }
        }
        self.remove_file_files(owner)?;
        // The directory goes with its last file.
        let _ = std::fs::remove_dir(self.nodes_dir());
        Ok(())
    }

    /// Stops and forgets the processes of nodes whose namespace was
    /// deleted behind nsnet's back (`ip netns del`): a process left running
    /// keeps the unnamed namespace alive. Their logs go too (`gc`).
    pub(super) fn forget_gone_nodes(&self, out: &mut Outcome) {
        for node in self.nodes_with_processes() {
            if self.namespace_exists(&NsRef::Named(node.clone())) {
                continue;
            }
            for p in &self.read_node(&node) {
                let what = if alive(p) { "stop" } else { "forget" };
                out.changes.push(format!(
                    "{what} process {:?} of {node} (its namespace no longer exists)",
                    p.command
                ));
                stop(p);
                let _ = std::fs::remove_file(&p.log);
            }
            let _ = self.write_node(&node, &[]);
        }
    }

    /// The `run` processes that died while their node lives.
    pub(super) fn exited_processes(&self) -> Vec<ProcessView> {
        self.node_processes(None)
            .into_iter()
            .filter(|p| !p.running && self.namespace_exists(&NsRef::Named(p.node.clone())))
            .collect()
    }
}

/// Writes one node file where its place says (its directory made), after
/// checking that the node will see it there; returns where it went.
fn write_node_file(node: &str, path: &Path, source: &FileSource, root: &Path) -> Result<PathBuf> {
    let (host, needed) = match place_of(node, path, root) {
        FilePlace::Etc { host, shadows } => (host, shadows),
        FilePlace::Private { host, dir } => (host, dir),
    };
    if !needed.exists() {
        return Err(Error::NodeFileUnseen {
            node: node.to_string(),
            path: path.to_path_buf(),
            needed,
        });
    }
    let content = match source {
        FileSource::Text(t) => t.clone().into_bytes(),
        FileSource::Path(p) => std::fs::read(p).map_err(|source| Error::NodeFileSource {
            node: node.to_string(),
            path: path.to_path_buf(),
            source_file: p.clone(),
            source,
        })?,
    };
    let fail = |source| Error::WriteFile {
        path: host.display().to_string(),
        source,
    };
    if let Some(dir) = host.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    if std::fs::read(&host).ok().as_deref() != Some(&content[..]) {
        std::fs::write(&host, &content).map_err(fail)?;
    }
    Ok(host)
}

/// `nsnet exec NODE -- sh -c COMMAND` with the current nsnet binary, in
/// the directory of the topology file `owner` (its relative paths, such as
/// a daemon's configuration, work as written).
fn in_node(node: &str, command: &str, owner: &str, state_dir: &Path) -> Result<Command> {
    let exe = std::env::current_exe().map_err(|source| Error::NodeProcess {
        node: node.to_string(),
        command: command.to_string(),
        what: "finding the nsnet binary",
        source,
    })?;
    let mut c = Command::new(exe);
    c.arg("--state-dir")
        .arg(state_dir)
        .args(["exec", node, "--", "sh", "-c", command])
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null());
    if let Some(dir) = Path::new(owner).parent() {
        c.current_dir(dir);
    }
    Ok(c)
}

/// Runs an `exec` command to its end; a failure carries its output.
fn run_once(node: &str, command: &str, owner: &str, state_dir: &Path) -> Result<()> {
    let out = in_node(node, command, owner, state_dir)?
        .output()
        .map_err(|source| Error::NodeProcess {
            node: node.to_string(),
            command: command.to_string(),
            what: "running it",
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Err(Error::NodeExecFailed {
        node: node.to_string(),
        command: command.to_string(),
        status: out.status.to_string(),
        output: text
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// Starts a `run` command in a session of its own, its output appended to
/// `log`.
fn spawn(
    node: &str,
    command: &str,
    owner: &str,
    state_dir: &Path,
    log: &Path,
    mark: &str,
) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let fail = |what, source| Error::NodeProcess {
        node: node.to_string(),
        command: command.to_string(),
        what,
        source,
    };
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("making its log directory", e))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| fail("opening its log", e))?;
    let err = out.try_clone().map_err(|e| fail("opening its log", e))?;
    let mut cmd = in_node(node, command, owner, state_dir)?;
    cmd.stdout(out).stderr(err).env(MARK, mark);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| fail("starting it", e))
}
