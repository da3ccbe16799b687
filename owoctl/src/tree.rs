//! `owoctl tree` on a terminal: owod's JSON answer drawn with box-drawing lines, each process
//! under its parent.

use std::fmt::Write as _;

use serde_json::Value;

use crate::terminal::printable;

/// The answer of `DumpProcessTree` in its `json` format, drawn: one line a process, `PID COMM
/// (uid UID) COMMAND`, its children below it on `├─`, `└─` and `│`.
pub fn draw(answer: &Value) -> String {
    let mut out = String::new();
    for root in answer["processes"].as_array().into_iter().flatten() {
        node(root, "", None, &mut out);
    }
    if let Some(n) = answer["not_shown"].as_u64() {
        let _ = writeln!(
            out,
            "# {n} more processes not shown; ask for one subtree with --pid"
        );
    }
    out
}

/// One process and, below it, its children. `last`: whether it is its parent's last child
/// (`None` for a root, drawn without a branch).
fn node(process: &Value, prefix: &str, last: Option<bool>, out: &mut String) {
    let branch = match last {
        None => "",
        Some(false) => "├─ ",
        Some(true) => "└─ ",
    };
    let text = |key: &str| printable(process[key].as_str().unwrap_or_default());
    let _ = writeln!(
        out,
        "{prefix}{branch}{} {} (uid {}) {}",
        process["pid"],
        text("comm"),
        process["uid"],
        text("cmdline")
    );
    let below = match last {
        None => prefix.to_owned(),
        Some(false) => format!("{prefix}│  "),
        Some(true) => format!("{prefix}   "),
    };
    let children = process["children"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for (i, child) in children.iter().enumerate() {
        node(child, &below, Some(i + 1 == children.len()), out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn children_hang_from_their_parents_on_box_drawing_lines() {
        let p = |pid: u32, comm: &str, children: Vec<Value>| json!({"pid": pid, "ppid": 0, "uid": 0, "comm": comm, "cmdline": comm, "children": children});
        let answer = json!({
            "processes": [p(1, "init", vec![
                p(10, "sshd", vec![p(20, "bash", vec![p(30, "vim\u{1b}[2J", vec![])])]),
                p(11, "cron", vec![]),
            ])],
            "not_shown": 3,
        });
        assert_eq!(
            draw(&answer),
            "1 init (uid 0) init\n\
             ├─ 10 sshd (uid 0) sshd\n\
             │  └─ 20 bash (uid 0) bash\n\
             │     └─ 30 vim[2J (uid 0) vim[2J\n\
             └─ 11 cron (uid 0) cron\n\
             # 3 more processes not shown; ask for one subtree with --pid\n"
        );
    }
}
