//! The records owod writes (the `event` object that owod(8) describes), typed from the process stage to
//! the hub: one type per kind of record. Each record lists its fields, in the order they are
//! written, once, in its `visit`: the JSON writer ([`Record::write_json`]) and the rules'
//! accessor ([`Record::field`]) are two visitors of that one list.

use std::{net::IpAddr, sync::Arc};

use owo_common::{
    abi,
    event::{Argv, BpfObject, Comm, Creds, TamperAction, Via},
    render::{self, CMDLINE_BUDGET, NAME_BUDGET, PARENT_CMDLINE_BUDGET, PATH_BUDGET},
};
use serde_json::{Map, Value};

/// What a record's fields are shown to: each method is one field (a byte string's `_escaped` and
/// `_truncated` flags come with it).
pub trait Visit {
    fn uint(&mut self, key: &str, value: u64);
    fn int(&mut self, key: &str, value: i64);
    fn bool(&mut self, key: &str, value: bool);
    fn str(&mut self, key: &str, value: &str);
    /// Bytes from the kernel, within `budget` bytes of JSON; `cut`: the kernel cut them.
    fn text(&mut self, key: &str, value: &[u8], budget: usize, cut: bool);
    /// An argv, as the array `args` (within its budget); `cut`: the kernel cut it.
    fn args(&mut self, key: &str, args: &Argv, cut: bool);
    fn uints(&mut self, key: &str, values: &[u64]);
    fn ints(&mut self, key: &str, values: &[i64]);
    fn strs(&mut self, key: &str, values: &[String]);
    /// A value of the agent's own records (status-like: maps and lists).
    fn json(&mut self, key: &str, value: &Value);
}

/// Who did it: the fields every process-attributed record starts with.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: Option<Arc<str>>,
    pub gid: u32,
    pub comm: Comm,
    /// The process's executable, shared with the process table.
    pub exe: Option<Arc<[u8]>>,
    pub cgroup_id: u64,
    /// How the call reached the kernel (activity records).
    pub via: Via,
}

impl Actor {
    /// `exe_cut`: the kernel could not give the whole executable path (known for an exec).
    fn visit(&self, event_type: &str, exe_cut: bool, v: &mut impl Visit) {
        v.str("event_type", event_type);
        v.uint("pid", self.pid.into());
        v.uint("tid", self.tid.into());
        v.uint("ppid", self.ppid.into());
        v.uint("uid", self.uid.into());
        if let Some(user) = &self.user {
            v.text("user", user.as_bytes(), NAME_BUDGET, false);
        }
        v.uint("gid", self.gid.into());
        v.text("comm", &self.comm, NAME_BUDGET, false);
        if let Some(exe) = &self.exe {
            v.text("exe", exe, PATH_BUDGET, exe_cut);
        }
        v.uint("cgroup_id", self.cgroup_id);
        if let Some(via) = self.via.name() {
            v.str("via", via);
        }
    }
}

/// A syscall by its name, or its number when owod does not know it.
fn syscall(v: &mut impl Visit, number: u32) {
    match abi::syscall_name(number) {
        Some(name) => v.str("syscall", name),
        None => v.uint("syscall", number.into()),
    }
}

/// The executable's SHA-256, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sha256 {
    /// Its place in the record while the hash is computed; it leaves the process stage filled.
    Pending,
    Hash(String),
    Failed {
        status: &'static str,
        error: Option<String>,
    },
}

/// What a cgroup path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    pub container_id: Option<String>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
    pub systemd_unit: Option<String>,
}

/// The parent of an exec'ing process, as the process table knows it.
#[derive(Clone, Debug, Default)]
pub struct Parent {
    pub exe: Option<Arc<[u8]>>,
    pub args: Argv,
}

/// `execve`: a new program image.
#[derive(Clone, Debug, Default)]
pub struct ExecRecord {
    pub actor: Actor,
    pub exe_truncated: bool,
    pub exe_memfd: bool,
    pub exe_deleted: bool,
    pub inode: Option<u64>,
    /// `None` when hashing is off.
    pub sha256: Option<Sha256>,
    /// The filename as passed to exec.
    pub path: Vec<u8>,
    pub path_truncated: bool,
    pub args: Argv,
    pub args_truncated: bool,
    pub cwd: Option<Vec<u8>>,
    pub cwd_truncated: bool,
    pub stdin: Option<&'static str>,
    pub stdout: Option<&'static str>,
    pub tty: Option<String>,
    pub auid: Option<u32>,
    pub session_id: Option<u32>,
    pub cgroup: Option<(String, CgroupInfo)>,
    pub parent: Option<Parent>,
    /// The executables from pid 1 down to the parent, joined by `|`.
    pub ancestors: Vec<u8>,
}

impl ExecRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("execve", self.exe_truncated, v);
        if self.exe_memfd {
            v.bool("exe_memfd", true);
        } else if self.exe_deleted {
            v.bool("exe_deleted", true);
        }
        if let Some(inode) = self.inode {
            v.uint("inode", inode);
        }
        match &self.sha256 {
            None => {}
            Some(Sha256::Pending) => v.str("sha256_status", "pending"),
            Some(Sha256::Hash(hex)) => v.str("sha256", hex),
            Some(Sha256::Failed { status, error }) => {
                v.str("sha256_status", status);
                if let Some(error) = error {
                    v.str("sha256_error", error);
                }
            }
        }
        v.text("path", &self.path, PATH_BUDGET, self.path_truncated);
        v.text(
            "cmdline",
            &self.args.cmdline(),
            CMDLINE_BUDGET,
            self.args_truncated,
        );
        v.args("args", &self.args, self.args_truncated);
        if let Some(cwd) = &self.cwd {
            v.text("cwd", cwd, PATH_BUDGET, self.cwd_truncated);
        }
        if let Some(kind) = self.stdin {
            v.str("stdin", kind);
        }
        if let Some(kind) = self.stdout {
            v.str("stdout", kind);
        }
        v.bool("is_tty", self.tty.is_some());
        if let Some(tty) = &self.tty {
            v.str("tty", tty);
        }
        if let Some(auid) = self.auid {
            v.uint("auid", auid.into());
        }
        if let Some(session) = self.session_id {
            v.uint("session_id", session.into());
        }
        if let Some((path, info)) = &self.cgroup {
            v.text("cgroup", path.as_bytes(), PATH_BUDGET, false);
            if let Some(id) = &info.container_id {
                v.str("container_id", id);
            }
            if let Some(runtime) = info.container_runtime {
                v.str("container_runtime", runtime);
            }
            if let Some(pod) = &info.pod_uid {
                v.str("pod_uid", pod);
            }
            if let Some(unit) = &info.systemd_unit {
                v.text("systemd_unit", unit.as_bytes(), NAME_BUDGET, false);
            }
        }
        if let Some(parent) = &self.parent {
            if let Some(exe) = &parent.exe {
                v.text("parent_path", exe, PATH_BUDGET, false);
            }
            v.text(
                "parent_cmdline",
                &parent.args.cmdline(),
                PARENT_CMDLINE_BUDGET,
                false,
            );
        }
        v.text("ancestors", &self.ancestors, PATH_BUDGET, false);
    }
}

/// `exit`: the last thread of a process ended.
#[derive(Clone, Debug, Default)]
pub struct ExitRecord {
    pub actor: Actor,
    pub exit_code: u32,
    pub signal: Option<u32>,
    pub core_dumped: bool,
}

impl ExitRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("exit", false, v);
        v.uint("exit_code", self.exit_code.into());
        if let Some(signal) = self.signal {
            v.uint("signal", signal.into());
        }
        if self.core_dumped {
            v.bool("core_dumped", true);
        }
    }
}

/// `file`: an open, create, unlink or rename under a watched path.
#[derive(Clone, Debug, Default)]
pub struct FileRecord {
    pub actor: Actor,
    /// `open`, `create`, `library_load`, `unlink` or `rename`.
    pub kind: &'static str,
    pub syscall: u32,
    pub path: Vec<u8>,
    pub path_truncated: bool,
    pub path2: Option<Vec<u8>>,
    pub path2_truncated: bool,
    pub flags: u32,
    /// For a create.
    pub mode: Option<u32>,
    /// Not known for an io_uring request.
    pub ret: Option<i64>,
}

impl FileRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("file", false, v);
        v.str("type", self.kind);
        syscall(v, self.syscall);
        v.text("path", &self.path, PATH_BUDGET, self.path_truncated);
        if let Some(path2) = &self.path2 {
            v.text("path2", path2, PATH_BUDGET, self.path2_truncated);
        }
        v.uint("flags", self.flags.into());
        if let Some(mode) = self.mode {
            v.uint("mode", mode.into());
        }
        if let Some(ret) = self.ret {
            v.int("ret", ret);
        }
        unread(v, &[("ret", self.ret.is_none())]);
    }
}

/// `unread`: the fields a record leaves out because the kernel could not read them (an
/// io_uring request's result, its peer), if any.
fn unread(v: &mut impl Visit, fields: &[(&str, bool)]) {
    let missing: Vec<String> = fields
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    if !missing.is_empty() {
        v.strs("unread", &missing);
    }
}

/// `network`: a connect, accept or datagram send.
#[derive(Clone, Debug)]
pub struct NetworkRecord {
    pub actor: Actor,
    /// `connect`, `accept` or `sendto`.
    pub kind: &'static str,
    pub syscall: u32,
    /// The socket's, unless it was not known (a registered file of an io_uring request).
    pub protocol: Option<u16>,
    /// Our side, or for an accept the peer: not known for an io_uring accept (not yet), or
    /// for a connect through a registered file.
    pub saddr: Option<IpAddr>,
    pub sport: Option<u16>,
    pub daddr: IpAddr,
    pub dport: u16,
    pub dns_query: Option<String>,
    /// Not known for an io_uring request.
    pub ret: Option<i64>,
}

impl NetworkRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("network", false, v);
        v.str("type", self.kind);
        syscall(v, self.syscall);
        v.str("family", if self.daddr.is_ipv4() { "ipv4" } else { "ipv6" });
        match self.protocol {
            Some(6) => v.str("protocol", "tcp"),
            Some(17) => v.str("protocol", "udp"),
            Some(other) => v.uint("protocol", other.into()),
            None => {}
        }
        if let Some(saddr) = self.saddr {
            v.str("saddr", &saddr.to_string());
        }
        if let Some(sport) = self.sport {
            v.uint("sport", sport.into());
        }
        v.str("daddr", &self.daddr.to_string());
        v.uint("dport", self.dport.into());
        let is_dns = self.dport == 53;
        v.bool("is_dns", is_dns);
        if let Some(name) = self.dns_query.as_deref().filter(|_| is_dns) {
            v.str("dns_query", name);
        }
        if let Some(ret) = self.ret {
            v.int("ret", ret);
        }
        unread(
            v,
            &[
                ("protocol", self.protocol.is_none()),
                ("saddr", self.saddr.is_none()),
                ("sport", self.sport.is_none()),
                ("ret", self.ret.is_none()),
            ],
        );
    }
}

/// `privilege`: a set*id call, with the credentials before and after it.
#[derive(Clone, Debug, Default)]
pub struct PrivilegeRecord {
    /// Its `uid` and `gid` are those before the call.
    pub actor: Actor,
    pub syscall: u32,
    pub before: Creds,
    pub after: Creds,
    /// As the caller wrote them: -1 means "leave unchanged".
    pub args: Vec<i64>,
    pub ret: i64,
}

impl PrivilegeRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("privilege", false, v);
        v.str("type", abi::syscall_name(self.syscall).unwrap_or("set?id"));
        v.uint("euid", self.before.euid.into());
        v.uint("egid", self.before.egid.into());
        v.uint("new_uid", self.after.uid.into());
        v.uint("new_gid", self.after.gid.into());
        v.uint("new_euid", self.after.euid.into());
        v.uint("new_egid", self.after.egid.into());
        v.ints("args", &self.args);
        v.int("ret", self.ret);
    }
}

/// `module`: init_module or finit_module.
#[derive(Clone, Debug, Default)]
pub struct ModuleRecord {
    pub actor: Actor,
    pub syscall: u32,
    pub path: Option<Vec<u8>>,
    pub path_truncated: bool,
    pub ret: i64,
}

impl ModuleRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("module", false, v);
        v.str(
            "type",
            abi::syscall_name(self.syscall).unwrap_or("init_module"),
        );
        if let Some(path) = &self.path {
            v.text("path", path, PATH_BUDGET, self.path_truncated);
        }
        v.int("ret", self.ret);
    }
}

/// A path shared by the records that name it, and whether it was cut.
pub type SharedPath = (Arc<[u8]>, bool);

/// `write`: a write(2) to a watched file.
#[derive(Clone, Debug, Default)]
pub struct WriteRecord {
    pub actor: Actor,
    pub fd: u32,
    pub count: u64,
    /// The file's path, shared with the stage's cache (and whether it was cut); `None` when no
    /// longer known.
    pub path: Option<SharedPath>,
}

impl WriteRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("write", false, v);
        v.uint("fd", self.fd.into());
        v.uint("count", self.count);
        match &self.path {
            Some((path, cut)) => v.text("path", path, PATH_BUDGET, *cut),
            None => v.bool("path_unknown", true),
        }
    }
}

/// `behavior`: a rule's chain completed.
#[derive(Clone, Debug, Default)]
pub struct BehaviorRecord {
    pub rule: String,
    pub severity: String,
    pub detail: String,
    pub description: String,
    pub pid: u64,
    pub related_seq: Vec<u64>,
    pub mitre: Vec<String>,
}

impl BehaviorRecord {
    fn visit(&self, v: &mut impl Visit) {
        v.str("event_type", "behavior");
        v.str("rule", &self.rule);
        v.str("severity", &self.severity);
        v.str("detail", &self.detail);
        if !self.description.is_empty() {
            v.str("description", &self.description);
        }
        v.uint("pid", self.pid);
        v.uints("related_seq", &self.related_seq);
        if !self.mitre.is_empty() {
            v.strs("mitre", &self.mitre);
        }
    }
}

/// `agent`: owod's own records (start, stop, reload, loss): a `type` and fields in the order
/// they were set.
#[derive(Clone, Debug)]
pub struct AgentRecord {
    pub kind: &'static str,
    fields: Map<String, Value>,
}

impl AgentRecord {
    pub fn new(kind: &'static str) -> AgentRecord {
        AgentRecord {
            kind,
            fields: Map::new(),
        }
    }

    /// A loss: `count` records of `monitor` (if one) lost at `stage`, `total` so far.
    pub fn loss(stage: &'static str, monitor: Option<&'static str>, count: u64) -> AgentRecord {
        let mut record = AgentRecord::new("loss");
        record.set("stage", stage);
        if let Some(monitor) = monitor {
            record.set("monitor", monitor);
        }
        record.set("count", count);
        record
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut AgentRecord {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    fn visit(&self, v: &mut impl Visit) {
        v.str("event_type", "agent");
        v.str("type", self.kind);
        for (key, value) in &self.fields {
            v.json(key, value);
        }
    }
}

/// An `agent` record of type `tamper`: another process reached owod. Its process fields name
/// the process that did.
#[derive(Clone, Debug)]
pub struct TamperRecord {
    pub actor: Actor,
    pub action: Tampering,
    /// The same action by the same process since its last record (at most one a second).
    pub repeats: u32,
}

/// What was done to owod.
#[derive(Clone, Debug)]
pub enum Tampering {
    /// Seen by the kernel side as it was asked for.
    Kernel(TamperAction),
    /// What a file record shows done to owod's files (`operation`: `write`, `create`,
    /// `unlink`, `rename`) or its memory (`memory`: an open of `/proc/PID/mem`).
    File {
        operation: &'static str,
        path: Vec<u8>,
        path2: Option<Vec<u8>>,
        ret: Option<i64>,
    },
}

/// bpf(2) commands by name (`enum bpf_cmd`), those that reach one object.
fn bpf_command(command: u32) -> Option<&'static str> {
    Some(match command {
        1 => "map_lookup_elem",
        2 => "map_update_elem",
        3 => "map_delete_elem",
        4 => "map_get_next_key",
        6 => "obj_pin",
        7 => "obj_get",
        10 => "prog_test_run",
        13 => "prog_get_fd_by_id",
        14 => "map_get_fd_by_id",
        15 => "obj_get_info_by_fd",
        21 => "map_lookup_and_delete_elem",
        22 => "map_freeze",
        24 => "map_lookup_batch",
        25 => "map_lookup_and_delete_batch",
        26 => "map_update_batch",
        27 => "map_delete_batch",
        29 => "link_update",
        34 => "link_detach",
        _ => return None,
    })
}

impl TamperRecord {
    fn visit(&self, v: &mut impl Visit) {
        self.actor.visit("agent", false, v);
        v.str("type", "tamper");
        match &self.action {
            Tampering::Kernel(TamperAction::Bpf {
                command,
                object,
                id,
            }) => {
                v.str("action", "bpf");
                match bpf_command(*command) {
                    Some(name) => v.str("bpf_command", name),
                    None => v.uint("bpf_command", (*command).into()),
                }
                let object = match object {
                    BpfObject::Program => "program",
                    BpfObject::Map => "map",
                    BpfObject::Link => "link",
                };
                v.str("object", object);
                v.uint("object_id", (*id).into());
            }
            Tampering::Kernel(TamperAction::Signal(signal)) => {
                v.str("action", "signal");
                v.uint("signal", (*signal).into());
                if let Some(name) = i32::try_from(*signal)
                    .ok()
                    .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
                {
                    v.str("signal_name", name.as_str());
                }
            }
            Tampering::Kernel(TamperAction::Ptrace(request)) => {
                v.str("action", "ptrace");
                match *request {
                    16 => v.str("request", "attach"),
                    0x4206 => v.str("request", "seize"),
                    other => v.uint("request", other.into()),
                }
            }
            Tampering::Kernel(TamperAction::VmRead) => v.str("action", "process_vm_readv"),
            Tampering::Kernel(TamperAction::VmWrite) => v.str("action", "process_vm_writev"),
            Tampering::File {
                operation,
                path,
                path2,
                ret,
            } => {
                match *operation {
                    "memory" => v.str("action", "memory_open"),
                    operation => {
                        v.str("action", "file");
                        v.str("operation", operation);
                    }
                }
                v.text("path", path, PATH_BUDGET, false);
                if let Some(path2) = path2 {
                    v.text("path2", path2, PATH_BUDGET, false);
                }
                if let Some(ret) = ret {
                    v.int("ret", *ret);
                }
            }
        }
        if self.repeats > 0 {
            v.uint("repeats", self.repeats.into());
        }
    }
}

/// A record on its way out.
#[derive(Clone, Debug)]
pub enum Record {
    Exec(Box<ExecRecord>),
    Exit(ExitRecord),
    File(FileRecord),
    Network(NetworkRecord),
    Privilege(PrivilegeRecord),
    Module(ModuleRecord),
    Write(WriteRecord),
    Behavior(BehaviorRecord),
    Agent(AgentRecord),
    Tamper(TamperRecord),
}

/// A field's value, as a rule sees it: strings as they are written (escaped and cut).
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Uint(u64),
    Int(i64),
    Bool(bool),
    Text(String),
    List(Vec<Field>),
}

impl Actor {
    fn held_bytes(&self) -> usize {
        self.comm.len()
            + self.exe.as_ref().map_or(0, |e| e.len())
            + self.user.as_ref().map_or(0, |u| u.len())
    }
}

impl Record {
    /// About the bytes the record holds, what it shares counted whole (a copy kept keeps it
    /// alive): for bounds in bytes on what keeps records.
    pub fn held_bytes(&self) -> usize {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
        std::mem::size_of::<Record>()
            + match self {
                Record::Exec(r) => {
                    std::mem::size_of::<ExecRecord>()
                        + r.actor.held_bytes()
                        + r.path.len()
                        + r.args.len()
                        + len(&r.cwd)
                        + r.tty.as_ref().map_or(0, String::len)
                        + r.cgroup.as_ref().map_or(0, |(path, info)| {
                            path.len() + info.container_id.as_ref().map_or(0, String::len)
                        })
                        + r.parent
                            .as_ref()
                            .map_or(0, |p| p.exe.as_ref().map_or(0, |e| e.len()) + p.args.len())
                        + r.ancestors.len()
                }
                Record::Exit(r) => r.actor.held_bytes(),
                Record::File(r) => r.actor.held_bytes() + r.path.len() + len(&r.path2),
                Record::Network(r) => {
                    r.actor.held_bytes() + r.dns_query.as_ref().map_or(0, String::len)
                }
                Record::Privilege(r) => r.actor.held_bytes() + 8 * r.args.len(),
                Record::Module(r) => r.actor.held_bytes() + len(&r.path),
                Record::Write(r) => {
                    r.actor.held_bytes() + r.path.as_ref().map_or(0, |(path, _)| path.len())
                }
                Record::Behavior(r) => {
                    r.rule.len()
                        + r.severity.len()
                        + r.detail.len()
                        + r.description.len()
                        + 8 * r.related_seq.len()
                        + r.mitre.iter().map(String::len).sum::<usize>()
                }
                Record::Agent(r) => r
                    .fields
                    .iter()
                    .map(|(k, v)| k.len() + v.to_string().len())
                    .sum(),
                Record::Tamper(r) => {
                    r.actor.held_bytes()
                        + match &r.action {
                            Tampering::File { path, path2, .. } => path.len() + len(path2),
                            Tampering::Kernel(_) => 0,
                        }
                }
            }
    }

    pub fn visit(&self, v: &mut impl Visit) {
        match self {
            Record::Exec(r) => r.visit(v),
            Record::Exit(r) => r.visit(v),
            Record::File(r) => r.visit(v),
            Record::Network(r) => r.visit(v),
            Record::Privilege(r) => r.visit(v),
            Record::Module(r) => r.visit(v),
            Record::Write(r) => r.visit(v),
            Record::Behavior(r) => r.visit(v),
            Record::Agent(r) => r.visit(v),
            Record::Tamper(r) => r.visit(v),
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Record::Exec(_) => "execve",
            Record::Exit(_) => "exit",
            Record::File(_) => "file",
            Record::Network(_) => "network",
            Record::Privilege(_) => "privilege",
            Record::Module(_) => "module",
            Record::Write(_) => "write",
            Record::Behavior(_) => "behavior",
            Record::Agent(_) | Record::Tamper(_) => "agent",
        }
    }

    /// The process a record is about, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Record::Exec(r) => Some(r.actor.pid),
            Record::Exit(r) => Some(r.actor.pid),
            Record::File(r) => Some(r.actor.pid),
            Record::Network(r) => Some(r.actor.pid),
            Record::Privilege(r) => Some(r.actor.pid),
            Record::Module(r) => Some(r.actor.pid),
            Record::Write(r) => Some(r.actor.pid),
            Record::Behavior(_) | Record::Agent(_) | Record::Tamper(_) => None,
        }
    }

    pub fn ppid(&self) -> Option<u32> {
        match self {
            Record::Exec(r) => Some(r.actor.ppid),
            Record::Exit(r) => Some(r.actor.ppid),
            Record::File(r) => Some(r.actor.ppid),
            Record::Network(r) => Some(r.actor.ppid),
            Record::Privilege(r) => Some(r.actor.ppid),
            Record::Module(r) => Some(r.actor.ppid),
            Record::Write(r) => Some(r.actor.ppid),
            Record::Behavior(_) | Record::Agent(_) | Record::Tamper(_) => None,
        }
    }

    /// The field called `name` (a flag such as `path_truncated` included), as written.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields(&[name]).pop().flatten()
    }

    /// The values of several fields, in one pass over the record.
    pub fn fields<S: AsRef<str>>(&self, names: &[S]) -> Vec<Option<Field>> {
        let mut lookup = Lookup {
            names,
            found: vec![None; names.len()],
        };
        self.visit(&mut lookup);
        lookup.found
    }

    /// Append the record as one JSON object.
    pub fn write_json(&self, out: &mut String) {
        out.push('{');
        self.visit(&mut Json { out, first: true });
        out.push('}');
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }
}

/// Writes the fields of an object into a line.
pub struct Json<'a> {
    pub out: &'a mut String,
    /// No field written yet.
    pub first: bool,
}

impl Json<'_> {
    /// A key: the records' own field names, which JSON needs no escape for.
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn number(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn flags(&mut self, key: &str, flags: render::Flags) {
        for (set, suffix) in [(flags.escaped, "_escaped"), (flags.truncated, "_truncated")] {
            if set {
                self.out.push_str(",\"");
                self.out.push_str(key);
                self.out.push_str(suffix);
                self.out.push_str("\":true");
            }
        }
    }
}

impl Visit for Json<'_> {
    fn uint(&mut self, key: &str, value: u64) {
        self.number(key, value);
    }

    fn int(&mut self, key: &str, value: i64) {
        self.number(key, value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        render::push_str(self.out, value);
    }

    fn text(&mut self, key: &str, value: &[u8], budget: usize, cut: bool) {
        self.key(key);
        let mut flags = render::push_bytes(self.out, value, budget, false);
        flags.truncated |= cut;
        self.flags(key, flags);
    }

    fn args(&mut self, key: &str, args: &Argv, cut: bool) {
        self.key(key);
        let mut flags = render::push_args(self.out, args.iter());
        flags.truncated |= cut;
        self.flags(key, flags);
    }

    fn uints(&mut self, key: &str, values: &[u64]) {
        self.json(key, &Value::from(values))
    }

    fn ints(&mut self, key: &str, values: &[i64]) {
        self.json(key, &Value::from(values))
    }

    fn strs(&mut self, key: &str, values: &[String]) {
        self.json(key, &Value::from(values))
    }

    fn json(&mut self, key: &str, value: &Value) {
        use std::fmt::Write as _;
        self.key(key);
        // A Value's Display is compact JSON.
        let _ = write!(self.out, "{value}");
    }
}

/// Finds fields by name.
struct Lookup<'n, S> {
    names: &'n [S],
    /// The value of each name, the first the record shows under it.
    found: Vec<Option<Field>>,
}

impl<S: AsRef<str>> Lookup<'_, S> {
    /// Set the slots named `key` that are still empty.
    fn put(&mut self, key: &str, value: impl Fn() -> Field) {
        for (name, slot) in self.names.iter().zip(&mut self.found) {
            if slot.is_none() && name.as_ref() == key {
                *slot = Some(value());
            }
        }
    }

    /// Is any name `key` or one of its flags (`key_escaped`, `key_truncated`)?
    fn near(&self, key: &str) -> bool {
        self.names.iter().any(|n| n.as_ref().starts_with(key))
    }

    fn flags(&mut self, key: &str, flags: render::Flags) {
        for (name, slot) in self.names.iter().zip(&mut self.found) {
            let Some(suffix) = name.as_ref().strip_prefix(key) else {
                continue;
            };
            if slot.is_none()
                && ((flags.escaped && suffix == "_escaped")
                    || (flags.truncated && suffix == "_truncated"))
            {
                *slot = Some(Field::Bool(true));
            }
        }
    }
}

impl<S: AsRef<str>> Visit for Lookup<'_, S> {
    fn uint(&mut self, key: &str, value: u64) {
        self.put(key, || Field::Uint(value));
    }

    fn int(&mut self, key: &str, value: i64) {
        self.put(key, || Field::Int(value));
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, || Field::Bool(value));
    }

    fn str(&mut self, key: &str, value: &str) {
        self.put(key, || Field::Text(value.to_owned()));
    }

    fn text(&mut self, key: &str, value: &[u8], budget: usize, cut: bool) {
        if !self.near(key) {
            return;
        }
        let e = render::escape(value, budget);
        let flags = render::Flags {
            escaped: e.escaped,
            truncated: e.truncated || cut,
        };
        self.put(key, || Field::Text(e.text.clone()));
        self.flags(key, flags);
    }

    fn args(&mut self, key: &str, args: &Argv, cut: bool) {
        if !self.near(key) {
            return;
        }
        let (texts, mut flags) = render::args_texts(args.iter());
        flags.truncated |= cut;
        if self.names.iter().any(|n| n.as_ref() == key) {
            self.put(key, || {
                Field::List(texts.iter().cloned().map(Field::Text).collect())
            });
        }
        self.flags(key, flags);
    }

    fn uints(&mut self, key: &str, values: &[u64]) {
        self.put(key, || {
            Field::List(values.iter().copied().map(Field::Uint).collect())
        });
    }

    fn ints(&mut self, key: &str, values: &[i64]) {
        self.put(key, || {
            Field::List(values.iter().copied().map(Field::Int).collect())
        });
    }

    fn strs(&mut self, key: &str, values: &[String]) {
        self.put(key, || {
            Field::List(values.iter().cloned().map(Field::Text).collect())
        });
    }

    fn json(&mut self, _key: &str, _value: &Value) {
        // The agent's own records are not looked at by rules.
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An exec record with every field there, each as long as the kernel gives and made of the
    /// bytes that cost most in JSON.
    pub(crate) fn worst_exec() -> Record {
        let costly = |n: usize| vec![0x01u8; n];
        let info = CgroupInfo {
            container_id: Some("c".repeat(64)),
            container_runtime: Some("containerd"),
            pod_uid: Some("p".repeat(36)),
            systemd_unit: Some("\u{1}".repeat(255)),
        };
        Record::Exec(Box::new(ExecRecord {
            actor: Actor {
                user: Some("\u{1}".repeat(255).into()),
                comm: Comm::new(&costly(16)),
                exe: Some(costly(abi::PATH_MAX).into()),
                ..Actor::default()
            },
            inode: Some(u64::MAX),
            sha256: Some(Sha256::Failed {
                status: "error",
                error: Some("e".repeat(200)),
            }),
            path: costly(abi::PATH_MAX),
            args: Argv::from_args(std::iter::repeat_n(costly(1), abi::ARGS_MAX / 2)),
            cwd: Some(costly(abi::PATH_MAX)),
            stdin: Some("socket"),
            stdout: Some("socket"),
            tty: Some("/dev/pts/1000".into()),
            auid: Some(u32::MAX),
            session_id: Some(u32::MAX),
            cgroup: Some(("\u{1}".repeat(abi::PATH_MAX), info)),
            parent: Some(Parent {
                exe: Some(costly(abi::PATH_MAX).into()),
                args: Argv::from_args(std::iter::repeat_n(costly(1), abi::ARGS_MAX / 2)),
            }),
            ancestors: costly(abi::PATH_MAX),
            exe_truncated: true,
            path_truncated: true,
            args_truncated: true,
            cwd_truncated: true,
            ..ExecRecord::default()
        }))
    }

    /// Every flag of a field cut both by the kernel and to its budget is still one key.
    #[test]
    fn the_costliest_exec_names_each_field_once() {
        let line = worst_exec().to_json();
        let fields: serde_json::Map<String, Value> =
            serde_json::from_str(&line).expect("one JSON object");
        for key in fields.keys() {
            assert_eq!(
                line.matches(&format!("\"{key}\":")).count(),
                1,
                "`{key}` in {line:.300}"
            );
        }
        assert_eq!(fields["exe_truncated"], true);
    }

    #[test]
    fn the_costliest_exec_fits_in_a_line_with_room_for_its_wrapper() {
        let line = worst_exec().to_json();
        // The wrapper: three names of at most 255 bytes (each byte at most 2 in JSON), the
        // timestamp, seq, run_id and their keys.
        let wrapper = 3 * 2 * 255 + 256;
        assert!(
            line.len() + wrapper <= render::LINE_MAX,
            "{} bytes + {wrapper} of wrapper > {}",
            line.len(),
            render::LINE_MAX
        );
    }
}
