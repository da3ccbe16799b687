//! The parsers of what others hand owod, each behind one function for the fuzz targets: the
//! config file, a rules file, a RELP server's answers and an HTTP collector's answer. Each
//! reads any input and answers with a value or an error, never a panic.

use std::time::Duration;

use crate::{
    behavior::rules,
    config::Config,
    export::remote::protocol::{self, relp_read},
};

pub use crate::export::remote::protocol::SendError;

/// A config file's text: `Ok` when owod would run with it, or every problem, as `--check-config`
/// prints them (there is at least one).
pub fn config(text: &str) -> Result<(), Vec<String>> {
    Config::parse(text)
        .map(drop)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

/// A rules file's text (`behavior.rules_files`), with the default `within` of the default
/// config: how many rules it holds, or why it is refused.
pub fn rules(text: &str) -> Result<usize, String> {
    let window = Duration::from_secs(Config::default().behavior.window_seconds);
    rules::parse(text, window)
        .map(|rules| rules.len())
        .map_err(|err| err.to_string())
}

/// One RELP frame a server sent: its transaction number, command and data.
#[derive(Debug, PartialEq, Eq)]
pub struct RelpFrame {
    pub txnr: u64,
    pub command: String,
    pub data: Vec<u8>,
}

/// A RELP server's answers, as a remote reads them: the frames `bytes` hold, in order, and why
/// reading stopped after them (at the end of `bytes`, the end of the stream).
pub fn relp_answers(bytes: &[u8]) -> (Vec<RelpFrame>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without drivers needs nothing from the system");
    runtime.block_on(async {
        let mut io = bytes;
        let mut frames = Vec::new();
        loop {
            match relp_read(&mut io).await {
                Ok((txnr, command, data)) => frames.push(RelpFrame {
                    txnr,
                    command,
                    data,
                }),
                Err(why) => return (frames, why),
            }
        }
    })
}

/// An HTTP collector's answer to a batch of `sent` records in `format` (`http_format`), as a
/// remote judges it from its status and body. A status hyper refuses (outside 100 to 999) fails
/// the connection, so the batch goes again, as it does when hyper reads such a status line.
pub fn http_answer(format: &str, status: u16, body: &[u8], sent: usize) -> Result<(), SendError> {
    let status = hyper::StatusCode::from_u16(status)
        .map_err(|e| SendError::Retry(format!("collector:80's answer: {e}")))?;
    protocol::judge("collector:80", format, status, body, sent)
}
