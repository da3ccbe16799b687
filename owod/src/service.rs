//! Process-level glue: logging setup and signals. SIGTERM and SIGINT stop the daemon cleanly.
//! SIGHUP (reload) and SIGUSR1 (process tree) arrive with the control plane and the process
//! tree; until then they are caught, so that their default action cannot kill the daemon
//! without a flush, and logged.

use tokio::signal::unix::{signal, SignalKind};

/// Log to stderr; colour only on a terminal.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OWO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves when the daemon should stop; names the signal.
pub async fn wait_for_stop() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => tracing::warn!("SIGHUP: reloading the config is not in this build yet; the running config stays"),
            _ = usr1.recv() => tracing::warn!("SIGUSR1: the process tree dump is not in this build yet"),
        }
    }
}
