//! Talking to one collector: a connection (TCP, with TLS when asked), and one batch at a time
//! written in the remote's protocol. A batch counts as delivered when the protocol says so:
//! an HTTP 2xx; for plain TCP, TLS and syslog, when the bytes are written and flushed (these
//! protocols have no acknowledgement, so records in flight when a connection breaks can be lost
//! or, after a retry, repeated: that is their limit).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{client::conn::http1::SendRequest, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::{pki_types::ServerName, ClientConfig};
use tokio::{
    io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    config::RemoteConfig,
    export::format::{run_of, seq_of},
};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub enum Connection {
    /// JSON lines, newline-terminated (tcp, tls).
    Lines(Box<dyn Io>),
    /// RFC 5424 messages with octet-counting framing (RFC 6587).
    Syslog {
        io: Box<dyn Io>,
        hostname: String,
    },
    Http(SendRequest<Full<Bytes>>),
    /// NATS JetStream: a batch is delivered when every record has its PubAck.
    Nats(async_nats::jetstream::Context),
    /// RELP (rsyslog's reliable protocol): every message has its `200 OK`.
    Relp {
        io: tokio::io::BufReader<Box<dyn Io>>,
        txnr: u64,
        hostname: String,
    },
}

/// One space- or newline-ended word of a RELP frame, and the byte that ended it. Read a byte at a
/// time, hence the buffered reader.
async fn relp_word<R: AsyncBufRead + Unpin>(io: &mut R) -> Result<(String, u8), String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    loop {
        let byte = io.read_u8().await.map_err(|e| format!("RELP: {e}"))?;
        if byte == b' ' || byte == b'\n' {
            return Ok((String::from_utf8_lossy(&buf).into_owned(), byte));
        }
        if buf.len() > 32 {
            return Err("RELP: a malformed frame".to_owned());
        }
        buf.push(byte);
    }
}

/// The most data a RELP answer may carry: a server answers with a status line and a few
/// words ("200 OK", an offer), never more.
const RELP_DATA_MAX: usize = 64 << 10;

/// One RELP frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A length past [`RELP_DATA_MAX`],
/// or anything but the one LF after the data, is refused before anything is allocated for it.
pub async fn relp_read<R: AsyncBufRead + Unpin>(
    io: &mut R,
) -> Result<(u64, String, Vec<u8>), String> {
    use tokio::io::AsyncReadExt;
    let (txnr, _) = relp_word(io).await?;
    let (command, _) = relp_word(io).await?;
    let (len, end) = relp_word(io).await?;
    let txnr: u64 = txnr
        .parse()
        .map_err(|_| format!("RELP: bad txnr `{txnr}`"))?;
    let len: usize = len
        .parse()
        .map_err(|_| format!("RELP: bad length `{len}`"))?;
    if len > RELP_DATA_MAX {
        return Err(format!(
            "RELP: the server announced {len} bytes of data (at most {RELP_DATA_MAX})"
        ));
    }
    if len == 0 {
        // No data, and no space before it; a space there is taken, with the LF after it.
        if end == b' ' && io.read_u8().await.map_err(|e| format!("RELP: {e}"))? != b'\n' {
            return Err("RELP: a frame without data is not ended by its LF".to_owned());
        }
        return Ok((txnr, command, Vec::new()));
    }
    if end == b'\n' {
        return Err("RELP: a malformed frame".to_owned());
    }
    let mut data = vec![0u8; len];
    io.read_exact(&mut data)
        .await
        .map_err(|e| format!("RELP: {e}"))?;
    match io.read_u8().await {
        Ok(b'\n') => Ok((txnr, command, data)),
        Ok(_) => Err("RELP: a frame's data is not followed by its LF".to_owned()),
        Err(e) => Err(format!("RELP: {e}")),
    }
}

fn relp_frame(txnr: u64, command: &str, data: &[u8]) -> Vec<u8> {
    let mut frame = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        frame.push(b' ');
        frame.extend_from_slice(data);
    }
    frame.push(b'\n');
    frame
}

/// The RFC 5424 message for one record (local0.info, app `owod`; the record is the message).
fn syslog_message(hostname: &str, line: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!(
        "<134>1 {now} {hostname} owod {} - - {line}",
        std::process::id()
    )
}

/// TLS settings from the remote's `tls`: its CA file or the system's roots, and a client
/// certificate for mutual TLS.
pub fn tls_config(remote: &RemoteConfig) -> Result<Arc<ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    if remote.tls.ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no system CA certificates found; set tls.ca_file".into());
        }
    } else {
        let certs = CertificateDer::pem_file_iter(&remote.tls.ca_file)
            .map_err(|e| format!("cannot read tls.ca_file `{}`: {e}", remote.tls.ca_file))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls.ca_file `{}`: {e}", remote.tls.ca_file))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls.ca_file `{}`: {e}", remote.tls.ca_file))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = if remote.tls.cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = CertificateDer::pem_file_iter(&remote.tls.cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("tls.cert_file `{}`: {e}", remote.tls.cert_file))?;
        let key = PrivateKeyDer::from_pem_file(&remote.tls.key_file)
            .map_err(|e| format!("tls.key_file `{}`: {e}", remote.tls.key_file))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate: {e}"))?
    };
    Ok(Arc::new(config))
}

fn host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A NATS client (JetStream), creating the stream if the config names one.
async fn connect_nats(
    remote: &RemoteConfig,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Connection, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("owod")
        .connection_timeout(std::time::Duration::from_secs(10))
        // One attempt: owod's own backoff and spool decide what happens next.
        .max_reconnects(Some(0));
    if let Some(config) = tls {
        options = options
            .require_tls(true)
            .tls_client_config((**config).clone());
    }
    let client = options
        .connect(remote.address.as_str())
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", remote.address))?;
    let jetstream = async_nats::jetstream::new(client);
    if !remote.nats_stream.is_empty() {
        let config = async_nats::jetstream::stream::Config {
            name: remote.nats_stream.clone(),
            subjects: vec![remote.nats_subject.clone()],
            ..Default::default()
        };
        jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| format!("JetStream stream `{}`: {e}", remote.nats_stream))?;
    }
    Ok(Connection::Nats(jetstream))
}

/// `run_id:seq` of a record line, for NATS deduplication (`Nats-Msg-Id`).
fn message_id(line: &str) -> Option<String> {
    Some(format!("{}:{}", run_of(line)?, seq_of(line)?))
}

/// Open a connection to the remote.
pub async fn connect(
    remote: &RemoteConfig,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Connection, String> {
    if remote.protocol == "nats" {
        return connect_nats(remote, tls).await;
    }
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        TcpStream::connect(&remote.address),
    )
    .await
    .map_err(|_| format!("no connection to {} within 10 s", remote.address))?
    .map_err(|e| format!("cannot connect to {}: {e}", remote.address))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = if remote.tls.server_name.is_empty() {
                host(&remote.address)
            } else {
                &remote.tls.server_name
            };
            let name = ServerName::try_from(name.to_owned())
                .map_err(|e| format!("server name `{name}`: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {} failed: {e}", remote.address))?;
            Box::new(stream)
        }
    };
    match remote.protocol.as_str() {
        "http" | "https" => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| format!("HTTP with {} failed: {e}", remote.address))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Connection::Http(sender))
        }
        "syslog" => {
            let hostname = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "-".into());
            Ok(Connection::Syslog { io, hostname })
        }
        "relp" => {
            let hostname = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "-".into());
            let mut io = tokio::io::BufReader::new(io);
            let offer = b"relp_version=0\nrelp_software=owod\ncommands=syslog";
            io.write_all(&relp_frame(1, "open", offer))
                .await
                .map_err(|e| format!("RELP: {e}"))?;
            io.flush().await.map_err(|e| format!("RELP: {e}"))?;
            let (_, command, data) = relp_read(&mut io).await?;
            if command != "rsp" || !data.starts_with(b"200") {
                return Err(format!(
                    "RELP: {} refused the session: {}",
                    remote.address,
                    String::from_utf8_lossy(&data)
                ));
            }
            Ok(Connection::Relp {
                io,
                txnr: 1,
                hostname,
            })
        }
        _ => Ok(Connection::Lines(io)),
    }
}

/// The most of an HTTP answer's body that is read (an Elasticsearch bulk answer names every
/// item, so it grows with the batch).
const HTTP_ANSWER_MAX: usize = 16 << 20;

/// The body of an HTTP batch, and its content type.
pub fn http_body(format: &str, batch: &[String]) -> (Vec<u8>, &'static str) {
    let mut body = Vec::with_capacity(batch.iter().map(|l| l.len() + 32).sum());
    match format {
        "elasticsearch_bulk" => {
            for line in batch {
                body.extend_from_slice(b"{\"create\":{}}\n");
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
            }
            (body, "application/x-ndjson")
        }
        "splunk_hec" => {
            for line in batch {
                body.extend_from_slice(b"{\"sourcetype\":\"_json\",\"event\":");
                body.extend_from_slice(line.as_bytes());
                body.extend_from_slice(b"}\n");
            }
            (body, "application/json")
        }
        _ => {
            for line in batch {
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
            }
            (body, "application/x-ndjson")
        }
    }
}

/// A record's agent names, which the Go agent's envelope repeats around it.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AgentNames {
    agent_name: String,
    agent_hostname: String,
    agent_group: String,
}

impl AgentNames {
    /// Every line is a record owod wrote, so this cannot fail; were it to, the names are empty.
    fn of(line: &str) -> AgentNames {
        serde_json::from_str(line).unwrap_or_default()
    }

    /// The Go agent's envelope of a record, as its remote output wrote it: the agent names (the
    /// group only when there is one), then the record whole under `alert`.
    fn envelope(&self, line: &str) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let mut out = String::with_capacity(line.len() + 128);
        out.push_str("{\"agent_name\":");
        out.push_str(&text(&self.agent_name));
        out.push_str(",\"agent_hostname\":");
        out.push_str(&text(&self.agent_hostname));
        if !self.agent_group.is_empty() {
            out.push_str(",\"agent_group\":");
            out.push_str(&text(&self.agent_group));
        }
        out.push_str(",\"alert\":");
        out.push_str(line);
        out.push('}');
        out
    }
}

/// Why a batch was not delivered.
#[derive(Debug)]
pub enum SendError {
    /// The connection is no good: the batch goes again, on a new one.
    Retry(String),
    /// The collector refused the batch for what it is (an HTTP 4xx other than 408 and 429): it
    /// would refuse it again, so it is dropped, and counted.
    Refused(String),
    /// The collector took the batch but refused these records of it (by their place in the
    /// batch) for what they are: an Elasticsearch bulk answer with item errors.
    Partly(Vec<usize>, String),
}

impl From<String> for SendError {
    fn from(why: String) -> SendError {
        SendError::Retry(why)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry(why) | SendError::Refused(why) | SendError::Partly(_, why) => {
                f.write_str(why)
            }
        }
    }
}

/// What an Elasticsearch bulk answer says of each record: with `"errors": true`, the items
/// that failed. One that failed for a reason that may pass (429, or 5xx) fails the batch, to be
/// sent again (what was taken comes twice, as at-least-once allows); the others are refused.
fn bulk_items(answer: &[u8], sent: usize) -> Result<(), SendError> {
    #[derive(serde::Deserialize)]
    struct Bulk {
        #[serde(default)]
        errors: bool,
        #[serde(default)]
        items: Vec<std::collections::HashMap<String, Item>>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        status: u16,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    let bulk: Bulk =
        serde_json::from_slice(answer).map_err(|e| format!("not a bulk answer: {e}"))?;
    if !bulk.errors {
        return Ok(());
    }
    // Items answer records by their place: with another count, the places that `Partly` gives
    // could name the wrong records, or none of the batch.
    if bulk.items.len() != sent {
        return Err(format!("{} items for {sent} records", bulk.items.len()).into());
    }
    let mut refused = Vec::new();
    let mut first = None;
    for (at, item) in bulk.items.iter().enumerate() {
        // One action per item, as sent: anything else is no answer about that record.
        let (Some(item), 1) = (item.values().next(), item.len()) else {
            return Err(format!("a bulk item with {} actions", item.len()).into());
        };
        match item.status {
            200..=299 => {}
            429 | 500..=599 => {
                return Err(SendError::Retry(format!(
                    "a record failed with {}",
                    item.status
                )))
            }
            status => {
                refused.push(at);
                first.get_or_insert_with(|| {
                    let reason = item
                        .error
                        .as_ref()
                        .map_or(String::new(), |e| format!(": {e}"));
                    format!("Elasticsearch refused records with {status}{reason}")
                });
            }
        }
    }
    match first {
        Some(why) => Err(SendError::Partly(refused, why)),
        None => Ok(()),
    }
}

/// What an HTTP answer from `address` says of the `sent` records of a batch in `format`: a 2xx
/// delivers them (an Elasticsearch bulk answer names those it refused), a 4xx other than 408
/// and 429 refuses them, anything else sends them again.
pub fn judge(
    address: &str,
    format: &str,
    status: StatusCode,
    answer: &[u8],
    sent: usize,
) -> Result<(), SendError> {
    let why = || format!("{address} answered HTTP {status}");
    match status.as_u16() {
        200..=299 if format == "elasticsearch_bulk" => bulk_items(answer, sent),
        200..=299 => Ok(()),
        408 | 429 => Err(SendError::Retry(why())),
        400..=499 => Err(SendError::Refused(why())),
        _ => Err(SendError::Retry(why())),
    }
}

impl Connection {
    /// Deliver one batch.
    pub async fn send(&mut self, remote: &RemoteConfig, batch: &[String]) -> Result<(), SendError> {
        match self {
            Connection::Lines(io) => {
                let mut bytes = Vec::with_capacity(batch.iter().map(|l| l.len() + 1).sum());
                let enveloped = remote.envelope == "alert";
                for line in batch {
                    if enveloped {
                        bytes.extend_from_slice(AgentNames::of(line).envelope(line).as_bytes());
                    } else {
                        bytes.extend_from_slice(line.as_bytes());
                    }
                    bytes.push(b'\n');
                }
                io.write_all(&bytes).await.map_err(|e| e.to_string())?;
                Ok(io.flush().await.map_err(|e| e.to_string())?)
            }
            Connection::Syslog { io, hostname } => {
                let mut bytes = Vec::new();
                for line in batch {
                    let msg = syslog_message(hostname, line);
                    bytes.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
                }
                io.write_all(&bytes).await.map_err(|e| e.to_string())?;
                Ok(io.flush().await.map_err(|e| e.to_string())?)
            }
            Connection::Relp { io, txnr, hostname } => {
                // The whole batch in one write, then every answer: all must be 200.
                let mut bytes = Vec::new();
                for line in batch {
                    *txnr = if *txnr >= 999_999_999 { 1 } else { *txnr + 1 };
                    bytes.extend_from_slice(&relp_frame(
                        *txnr,
                        "syslog",
                        syslog_message(hostname, line).as_bytes(),
                    ));
                }
                io.write_all(&bytes)
                    .await
                    .map_err(|e| format!("RELP: {e}"))?;
                io.flush().await.map_err(|e| format!("RELP: {e}"))?;
                for _ in 0..batch.len() {
                    let (n, command, data) = relp_read(io).await?;
                    if command == "serverclose" {
                        return Err(format!("RELP: {} closed the session", remote.address).into());
                    }
                    if command != "rsp" || !data.starts_with(b"200") {
                        return Err(format!(
                            "RELP: message {n} refused: {}",
                            String::from_utf8_lossy(&data)
                        )
                        .into());
                    }
                }
                Ok(())
            }
            Connection::Nats(jetstream) => {
                // Publish the whole batch, then wait for every acknowledgement. A redelivered
                // record has the same id, and JetStream's duplicate window drops it.
                let mut acks = Vec::with_capacity(batch.len());
                for line in batch {
                    let mut headers = async_nats::HeaderMap::new();
                    if let Some(id) = message_id(line) {
                        headers.insert("Nats-Msg-Id", id.as_str());
                    }
                    let ack = jetstream
                        .publish_with_headers(
                            remote.nats_subject.clone(),
                            headers,
                            Bytes::from(line.clone()),
                        )
                        .await
                        .map_err(|e| format!("NATS publish: {e}"))?;
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await
                        .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
                }
                Ok(())
            }
            Connection::Http(sender) if remote.posts_each_record() => {
                // As the Go agent posted: one enveloped record a request, as JSON. A refused one
                // is dropped alone; the batch may take `timeout_seconds` a request.
                let mut refused = Vec::new();
                let mut why = String::new();
                for (i, line) in batch.iter().enumerate() {
                    let names = AgentNames::of(line);
                    let extra = [
                        ("X-Agent-Name", names.agent_name.as_str()),
                        ("X-Agent-Hostname", names.agent_hostname.as_str()),
                    ];
                    let body = (names.envelope(line).into_bytes(), "application/json");
                    match post(sender, remote, body, &extra, "ndjson", 1).await {
                        Ok(()) => {}
                        Err(SendError::Refused(said)) => {
                            refused.push(i);
                            why = said;
                        }
                        Err(other) => return Err(other),
                    }
                }
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(SendError::Partly(refused, why))
                }
            }
            Connection::Http(sender) => {
                let body = http_body(&remote.http_format, batch);
                post(sender, remote, body, &[], &remote.http_format, batch.len()).await
            }
        }
    }
}

/// POST one body (and its content type) with the remote's headers and `extra`, and judge the
/// answer as for `format` and `records` records.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    remote: &RemoteConfig,
    (body, content_type): (Vec<u8>, &str),
    extra: &[(&str, &str)],
    format: &str,
    records: usize,
) -> Result<(), SendError> {
    let mut request = Request::post(remote.http_endpoint.as_str())
        .header(hyper::header::HOST, remote.address.as_str())
        .header(hyper::header::CONTENT_TYPE, content_type);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    for (name, value) in &remote.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Read the body to the end so the connection can be used again, but no more of it than an
    // answer needs: a longer one ends the connection.
    let body = http_body_util::Limited::new(response.into_body(), HTTP_ANSWER_MAX);
    let answer = http_body_util::BodyExt::collect(body)
        .await
        .map_err(|e| format!("{}'s answer: {e}", remote.address))?
        .to_bytes();
    judge(&remote.address, format, status, &answer, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::untrusted::{http_answer, relp_answers, RelpFrame};
    use proptest::{
        collection::vec,
        prelude::any,
        prop_assert, prop_assert_eq, prop_oneof,
        strategy::{Just, Strategy as _},
    };

    /// An `http_format`: one owod knows, or any other word.
    fn any_format() -> impl proptest::strategy::Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(crate::config::HTTP_FORMATS.to_vec()).prop_map(String::from),
            "[a-z_]{0,20}",
        ]
    }

    /// An item's status in a bulk answer: delivered, refused, to send again, or any number.
    fn any_item_status() -> impl proptest::strategy::Strategy<Value = u16> {
        prop_oneof![
            200u16..300,
            400u16..500,
            Just(429u16),
            500u16..600,
            any::<u16>()
        ]
    }

    /// An Elasticsearch bulk answer with an item of each status.
    fn bulk_answer(errors: bool, statuses: &[u16]) -> Vec<u8> {
        let items: Vec<String> = statuses
            .iter()
            .map(|s| format!("{{\"create\":{{\"status\":{s},\"error\":{{\"type\":\"x\"}}}}}}"))
            .collect();
        format!("{{\"errors\":{errors},\"items\":[{}]}}", items.join(",")).into_bytes()
    }

    /// A body: any bytes, or a bulk answer.
    fn any_answer() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        let bulk = (any::<bool>(), vec(any_item_status(), 0..8))
            .prop_map(|(errors, statuses)| bulk_answer(errors, &statuses));
        prop_oneof![vec(any::<u8>(), 0..256), bulk]
    }

    #[test]
    fn a_frame_without_data_is_read_whole_with_or_without_a_space() {
        let (frames, why) = relp_answers(b"1 rsp 0\n2 rsp 0 \n3 rsp 6 200 OK\n");
        let txnrs: Vec<u64> = frames.iter().map(|f| f.txnr).collect();
        assert_eq!(txnrs, [1, 2, 3], "{why}");
        assert_eq!(frames[2].data, b"200 OK");
        let (frames, why) = relp_answers(b"1 rsp 0 x\n");
        assert!(
            frames.is_empty() && why.contains("not ended by its LF"),
            "{why}"
        );
    }

    proptest::proptest! {
        /// Any bytes from a RELP server are frames and then an error, never a panic, and no
        /// frame holds more than an answer may.
        #[test]
        fn any_relp_answer_is_read_or_refused(bytes in vec(prop_oneof![
            Just(b' '), Just(b'\n'), any::<u8>(), proptest::char::range('0', '9').prop_map(|c| c as u8),
        ], 0..512)) {
            let (frames, why) = relp_answers(&bytes);
            prop_assert!(why.starts_with("RELP: "), "{why}");
            for frame in frames {
                prop_assert!(frame.data.len() <= RELP_DATA_MAX);
            }
        }

        /// Well-formed frames with any transaction number, command and data are read back as
        /// they were written, up to the end of the stream.
        #[test]
        fn relp_frames_are_read_back_exactly(
            sent in vec((any::<u64>(), "[!-~]{1,32}", vec(any::<u8>(), 0..300)), 0..6),
        ) {
            let bytes: Vec<u8> = sent
                .iter()
                .flat_map(|(txnr, command, data)| relp_frame(*txnr, command, data))
                .collect();
            let (frames, why) = relp_answers(&bytes);
            let expected: Vec<RelpFrame> = sent
                .into_iter()
                .map(|(txnr, command, data)| RelpFrame { txnr, command, data })
                .collect();
            prop_assert_eq!(frames, expected);
            let end = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            prop_assert_eq!(why, format!("RELP: {end}"));
        }

        /// Any HTTP answer is judged, never a panic, and the records it refuses are records of
        /// the batch, each named once, in order.
        #[test]
        fn any_http_answer_is_judged(
            format in any_format(),
            status in prop_oneof![200u16..300, any::<u16>()],
            answer in any_answer(),
            sent in prop_oneof![0usize..10, any::<usize>()],
        ) {
            if let Err(SendError::Partly(at, _)) = http_answer(&format, status, &answer, sent) {
                prop_assert!(!at.is_empty());
                prop_assert!(at.iter().all(|&i| i < sent), "{at:?} of {sent}");
                prop_assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
            }
        }

        /// A bulk answer with errors for the batch sent: one item that may pass sends the batch
        /// again; otherwise the records whose items failed are refused, and only those.
        #[test]
        fn a_bulk_answer_refuses_the_records_that_failed(
            statuses in vec(any_item_status(), 1..16),
        ) {
            let judged = http_answer(
                "elasticsearch_bulk",
                200,
                &bulk_answer(true, &statuses),
                statuses.len(),
            );
            let failed: Vec<usize> = (0..statuses.len())
                .filter(|&i| !(200..300).contains(&statuses[i]))
                .collect();
            if statuses.iter().any(|&s| s == 429 || (500..600).contains(&s)) {
                prop_assert!(matches!(judged, Err(SendError::Retry(_))), "{judged:?}");
            } else if failed.is_empty() {
                prop_assert!(judged.is_ok(), "{judged:?}");
            } else {
                prop_assert!(
                    matches!(&judged, Err(SendError::Partly(at, _)) if *at == failed),
                    "{judged:?}, expected {failed:?}"
                );
            }
        }

        /// A 2xx delivers a batch in any format but Elasticsearch's bulk, whatever its body.
        #[test]
        fn a_2xx_delivers(
            format in any_format().prop_filter("bulk answers are read", |f| f != "elasticsearch_bulk"),
            status in 200u16..300,
            answer in any_answer(),
            sent in any::<usize>(),
        ) {
            prop_assert!(http_answer(&format, status, &answer, sent).is_ok());
        }

        /// A 4xx other than 408 and 429 refuses a batch in any format, whatever its body.
        #[test]
        fn a_4xx_refuses(
            format in any_format(),
            status in (400u16..500).prop_filter("408 and 429 may pass", |s| *s != 408 && *s != 429),
            answer in any_answer(),
            sent in any::<usize>(),
        ) {
            let judged = http_answer(&format, status, &answer, sent);
            prop_assert!(matches!(judged, Err(SendError::Refused(_))), "{judged:?}");
        }
    }

    #[test]
    fn a_bulk_answer_names_the_records_it_refused() {
        let answer = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"create":{"status":409}}]}"#;
        match judge("es:9200", "elasticsearch_bulk", StatusCode::OK, answer, 3) {
            Err(SendError::Partly(at, why)) => {
                assert_eq!(at, [1, 2]);
                assert_eq!(
                    why,
                    "Elasticsearch refused records with 400: {\"type\":\"mapper_parsing_exception\"}"
                );
            }
            other => panic!("expected records 1 and 2 refused, got {other:?}"),
        }
        // Two records answered for three sent: which were refused is not known, so all go again.
        assert!(matches!(
            judge("es:9200", "elasticsearch_bulk", StatusCode::OK, answer, 2),
            Err(SendError::Retry(_))
        ));
    }

    #[test]
    fn http_bodies_for_each_product() {
        let batch = ["{\"seq\":1}".to_owned(), "{\"seq\":2}".to_owned()];
        assert_eq!(http_body("ndjson", &batch).0, b"{\"seq\":1}\n{\"seq\":2}\n");
        assert_eq!(
            http_body("elasticsearch_bulk", &batch).0,
            b"{\"create\":{}}\n{\"seq\":1}\n{\"create\":{}}\n{\"seq\":2}\n"
        );
        let hec = String::from_utf8(http_body("splunk_hec", &batch).0).unwrap();
        assert_eq!(
            hec.lines().next(),
            Some("{\"sourcetype\":\"_json\",\"event\":{\"seq\":1}}")
        );
    }
}
