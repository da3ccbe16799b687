//! A private `dbus-daemon`, configured like the system bus, with the repo's policy file
//! included (or, for the test that the daemon checks uids itself, a policy that allows all).

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
};

pub struct PrivateBus {
    child: Child,
    _dir: tempfile::TempDir,
    pub address: String,
}

/// The system bus's default policy (Debian's system.conf), which the policy file punches
/// holes in.
const SYSTEM_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>"#;

/// Everyone may own and call everything: only owod's own uid check is left.
const PERMISSIVE_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#;

impl PrivateBus {
    /// A bus like the system bus, with `contrib/org.owo.Observer1.conf`.
    pub fn start() -> PrivateBus {
        let policy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/org.owo.Observer1.conf");
        let policy = std::fs::canonicalize(policy).expect("contrib/org.owo.Observer1.conf");
        PrivateBus::with(&format!(
            "{SYSTEM_POLICY}\n  <include>{}</include>",
            policy.display()
        ))
    }

    pub fn permissive() -> PrivateBus {
        PrivateBus::with(PERMISSIVE_POLICY)
    }

    fn with(policy: &str) -> PrivateBus {
        let dir = tempfile::Builder::new()
            .prefix("owo-bus-")
            .tempdir()
            .expect("temp dir");
        // Unprivileged test callers must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("socket");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  <type>system</type>\n  \
                 <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n{policy}\n</busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run dbus-daemon (apt-get install dbus)");
        // It prints its address once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dbus-daemon's address");
        assert!(
            line.starts_with("unix:"),
            "dbus-daemon did not start: {line:?}"
        );
        PrivateBus {
            child,
            _dir: dir,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
