//! The process tree as text (SIGUSR1, as the original agent printed it) or JSON (for D-Bus
//! `DumpProcessTree`): every live process under its parent, with pid, ppid, uid, comm and
//! command line. Processes whose parent is unknown are roots.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::table::{ProcessInfo, ProcessTable};

/// Deeper chains (anyone can make one) are cut, so the recursion cannot exhaust the stack.
const MAX_DEPTH: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFormat {
    Text,
    Json,
}

impl std::str::FromStr for TreeFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<TreeFormat, String> {
        match s {
            "text" => Ok(TreeFormat::Text),
            "json" => Ok(TreeFormat::Json),
            other => Err(format!("unknown tree format `{other}` (text or json)")),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("no live process {0} is known")]
    NoSuchProcess(u32),
}

/// What one answer holds at most: the bus refuses a message past its limit (32 MiB on a stock
/// system bus), and drops the connection that sent it.
pub const ANSWER_MAX: usize = 4 << 20;

/// Room left in the answer, and the processes that did not fit.
struct Budget {
    left: usize,
    not_shown: usize,
}

impl Budget {
    /// Take `cost` bytes for one process; false (and counted) once the answer is full, and for
    /// every process after.
    fn take(&mut self, cost: usize) -> bool {
        if cost > self.left {
            self.left = 0;
            self.not_shown += 1;
            return false;
        }
        self.left -= cost;
        true
    }
}

/// The tree under `root` (0 = every process), within [`ANSWER_MAX`]: the processes past it are
/// counted, not shown.
pub fn render(table: &ProcessTable, root: u32, format: TreeFormat) -> Result<String, TreeError> {
    let live: BTreeMap<u32, &ProcessInfo> = table.live().collect();
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&pid, p) in &live {
        children.entry(p.ppid).or_default().push(pid);
    }
    let roots: Vec<u32> = if root == 0 {
        live.iter()
            .filter(|(pid, p)| p.ppid == **pid || !live.contains_key(&p.ppid))
            .map(|(pid, _)| *pid)
            .collect()
    } else if live.contains_key(&root) {
        vec![root]
    } else {
        return Err(TreeError::NoSuchProcess(root));
    };
    let tree = Tree {
        live: &live,
        children: &children,
    };
    let mut seen = HashSet::new();
    let mut budget = Budget {
        left: ANSWER_MAX - 256,
        not_shown: 0,
    };
    Ok(match format {
        TreeFormat::Text => {
            let mut out = String::from("PID\tPPID\tUID\tCOMM\tCOMMAND\n");
            for pid in roots {
                tree.text(pid, 0, &mut out, &mut seen, &mut budget);
            }
            if budget.not_shown > 0 {
                out.push_str(&format!(
                    "# {} more processes not shown: an answer holds at most {} MiB; ask for one subtree with --pid\n",
                    budget.not_shown,
                    ANSWER_MAX >> 20
                ));
            }
            out
        }
        TreeFormat::Json => {
            let nodes: Vec<Value> = roots
                .into_iter()
                .filter_map(|pid| tree.json(pid, 0, &mut seen, &mut budget))
                .collect();
            let mut answer = json!({ "processes": nodes });
            if budget.not_shown > 0 {
                answer["not_shown"] = budget.not_shown.into();
            }
            serde_json::to_string(&answer).expect("JSON values serialize")
        }
    })
}

struct Tree<'a> {
    live: &'a BTreeMap<u32, &'a ProcessInfo>,
    children: &'a BTreeMap<u32, Vec<u32>>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cmdline(p: &ProcessInfo) -> String {
    // One line per process: control characters would break the layout.
    lossy(&p.args.cmdline())
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Tree<'_> {
    fn text(
        &self,
        pid: u32,
        depth: usize,
        out: &mut String,
        seen: &mut HashSet<u32>,
        budget: &mut Budget,
    ) {
        let Some(p) = self.live.get(&pid) else { return };
        if depth > MAX_DEPTH {
            return;
        }
        if !seen.insert(pid) {
            return;
        }
        let comm: String = lossy(&p.comm).chars().filter(|c| !c.is_control()).collect();
        let line = format!(
            "{}{pid}\t{}\t{}\t{comm}\t{}\n",
            "  ".repeat(depth),
            p.ppid,
            p.uid,
            cmdline(p)
        );
        if budget.take(line.len()) {
            out.push_str(&line);
        }
        for &child in self.children.get(&pid).into_iter().flatten() {
            if child != pid {
                self.text(child, depth + 1, out, seen, budget);
            }
        }
    }

    fn json(
        &self,
        pid: u32,
        depth: usize,
        seen: &mut HashSet<u32>,
        budget: &mut Budget,
    ) -> Option<Value> {
        let p = self.live.get(&pid)?;
        if depth > MAX_DEPTH {
            return None;
        }
        if !seen.insert(pid) {
            return None;
        }
        // JSON escaping can at most sextuple a name; the keys and numbers take the rest.
        let cost = 6 * (p.comm.len() + p.exe.as_ref().map_or(0, |e| e.len()) + p.args.len()) + 128;
        let shown = budget.take(cost);
        let children: Vec<Value> = self
            .children
            .get(&pid)
            .into_iter()
            .flatten()
            .filter(|&&c| c != pid)
            .filter_map(|&c| self.json(c, depth + 1, seen, budget))
            .collect();
        if !shown {
            // Once one does not fit, none after it does: its children were counted too.
            return None;
        }
        Some(json!({
            "pid": pid,
            "ppid": p.ppid,
            "uid": p.uid,
            "comm": lossy(&p.comm),
            "exe": p.exe.as_deref().map(lossy),
            "cmdline": cmdline(p),
            "children": children,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProcessTable {
        let mut t = ProcessTable::new(64, 1 << 30);
        let p = |ppid, comm: &str, cmd: &str| ProcessInfo {
            ppid,
            uid: 1000,
            comm: owo_common::event::Comm::new(comm.as_bytes()),
            start_ticks: 1,
            exe: Some(format!("/usr/bin/{comm}").as_bytes().into()),
            args: owo_common::event::Argv::from_args(cmd.split(' ')),
            exited_at: None,
        };
        t.exec(1, p(0, "init", "/sbin/init"));
        t.exec(10, p(1, "sshd", "sshd -D"));
        t.exec(20, p(10, "bash", "bash -l"));
        t.exec(30, p(20, "vim", "vim /etc/passwd\n"));
        t
    }

    #[test]
    fn text_is_indented_under_parents() {
        let text = render(&table(), 0, TreeFormat::Text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "1\t0\t1000\tinit\t/sbin/init");
        assert_eq!(lines[2], "  10\t1\t1000\tsshd\tsshd -D");
        assert_eq!(lines[4], "      30\t20\t1000\tvim\tvim /etc/passwd ");
        let sub = render(&table(), 20, TreeFormat::Text).unwrap();
        assert_eq!(sub.lines().count(), 3);
        assert_eq!(
            render(&table(), 99, TreeFormat::Text),
            Err(TreeError::NoSuchProcess(99))
        );
    }

    #[test]
    fn json_nests_children() {
        let v: Value =
            serde_json::from_str(&render(&table(), 10, TreeFormat::Json).unwrap()).unwrap();
        assert_eq!(v["processes"][0]["pid"], 10);
        assert_eq!(
            v["processes"][0]["children"][0]["children"][0]["comm"],
            "vim"
        );
    }

    #[test]
    fn an_answer_past_its_limit_counts_what_it_leaves_out() {
        // 600 shells with 16 KiB command lines: 9.6 MiB, more than an answer holds.
        let mut t = ProcessTable::new(1000, 1 << 30);
        let long = "x".repeat(16 << 10);
        for pid in 2..602 {
            t.exec(
                pid,
                ProcessInfo {
                    ppid: 1,
                    uid: 0,
                    comm: owo_common::event::Comm::new(b"sh"),
                    start_ticks: 1,
                    exe: None,
                    args: owo_common::event::Argv::from_args(["sh", "-c", long.as_str()]),
                    exited_at: None,
                },
            );
        }
        let text = render(&t, 0, TreeFormat::Text).unwrap();
        assert!(text.len() <= ANSWER_MAX, "{} bytes", text.len());
        let shown = text.lines().filter(|l| l.contains("\tsh\t")).count();
        let note = text.lines().last().unwrap();
        assert!(
            note.starts_with(&format!("# {} more processes not shown", 600 - shown)),
            "{note}"
        );
        let json = render(&t, 0, TreeFormat::Json).unwrap();
        assert!(json.len() <= ANSWER_MAX, "{} bytes", json.len());
        let v: Value = serde_json::from_str(&json).unwrap();
        let listed = v["processes"].as_array().unwrap().len();
        assert!(listed > 0);
        assert_eq!(v["not_shown"], 600 - listed);
    }
}
