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

/// The tree under `root` (0 = every process).
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
    Ok(match format {
        TreeFormat::Text => {
            let mut out = String::from("PID\tPPID\tUID\tCOMM\tCOMMAND\n");
            for pid in roots {
                tree.text(pid, 0, &mut out, &mut seen);
            }
            out
        }
        TreeFormat::Json => {
            let nodes: Vec<Value> = roots
                .into_iter()
                .filter_map(|pid| tree.json(pid, 0, &mut seen))
                .collect();
            serde_json::to_string(&json!({ "processes": nodes })).expect("JSON values serialize")
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
    fn text(&self, pid: u32, depth: usize, out: &mut String, seen: &mut HashSet<u32>) {
        let Some(p) = self.live.get(&pid) else { return };
        if depth > MAX_DEPTH {
            return;
        }
        if !seen.insert(pid) {
            return;
        }
        let comm: String = lossy(&p.comm).chars().filter(|c| !c.is_control()).collect();
        out.push_str(&format!(
            "{}{pid}\t{}\t{}\t{comm}\t{}\n",
            "  ".repeat(depth),
            p.ppid,
            p.uid,
            cmdline(p)
        ));
        for &child in self.children.get(&pid).into_iter().flatten() {
            if child != pid {
                self.text(child, depth + 1, out, seen);
            }
        }
    }

    fn json(&self, pid: u32, depth: usize, seen: &mut HashSet<u32>) -> Option<Value> {
        let p = self.live.get(&pid)?;
        if depth > MAX_DEPTH {
            return None;
        }
        if !seen.insert(pid) {
            return None;
        }
        let children: Vec<Value> = self
            .children
            .get(&pid)
            .into_iter()
            .flatten()
            .filter(|&&c| c != pid)
            .filter_map(|&c| self.json(c, depth + 1, seen))
            .collect();
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
            comm: comm.as_bytes().to_vec(),
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
}
