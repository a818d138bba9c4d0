//! A minimal HTTP/1.1 and WebSocket client for the self-tests: raw enough
//! that nothing is answered behind the test's back (no automatic pongs).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens `host:port` of a base URL, with TLS trusting only `ca` for
/// `https`/`wss`.
pub async fn open(base: &str, ca: Option<&std::path::Path>) -> Box<dyn Io> {
    let (scheme, rest) = base.split_once("://").unwrap();
    let hostport = rest.split('/').next().unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    if scheme == "https" || scheme == "wss" {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca.expect("a CA file with TLS")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(host.to_owned()).unwrap();
        Box::new(connector.connect(name, tcp).await.unwrap())
    } else {
        Box::new(tcp)
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `GET base + path_and_query` on a fresh connection.
pub async fn get(base: &str, path_and_query: &str, ca: Option<&std::path::Path>) -> HttpResponse {
    let mut io = open(base, ca).await;
    let req =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = io.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
    /// The TCP stream ended (without a close frame if no `Close` came first).
    Eof,
}

pub struct Ws {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Ws {
    pub async fn connect(base: &str, path: &str, ca: Option<&std::path::Path>) -> Ws {
        let mut io = open(base, ca).await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        io.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
                buf.drain(..end + 4);
                return Ws { io, buf };
            }
        }
    }

    async fn send_frame(&mut self, op: u8, payload: &[u8]) {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | op];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.io.write_all(&f).await.unwrap();
    }

    pub async fn send(&mut self, text: &str) {
        self.send_frame(1, text.as_bytes()).await;
    }

    pub async fn pong(&mut self, payload: &[u8]) {
        self.send_frame(0xA, payload).await;
    }

    pub async fn ping(&mut self) {
        self.send_frame(0x9, b"hi").await;
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// The next frame.
    pub async fn next(&mut self) -> Frame {
        if !self.fill(2).await {
            return Frame::Eof;
        }
        let op = self.buf[0] & 0x0f;
        let mut len = (self.buf[1] & 0x7f) as usize;
        let mut pos = 2;
        if len == 126 {
            self.fill(4).await;
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            self.fill(10).await;
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize;
            pos = 10;
        }
        if !self.fill(pos + len).await {
            return Frame::Eof;
        }
        let payload = self.buf[pos..pos + len].to_vec();
        self.buf.drain(..pos + len);
        match op {
            1 => Frame::Text(String::from_utf8(payload).unwrap()),
            2 => Frame::Binary(payload),
            8 => Frame::Close,
            9 => Frame::Ping(payload),
            10 => Frame::Pong(payload),
            o => panic!("opcode {o}"),
        }
    }

    /// The next frame within `timeout`, `None` if none came.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Frame> {
        tokio::time::timeout(timeout, self.next()).await.ok()
    }

    /// Reads until a text frame satisfies `pred` (skipping others), within
    /// `timeout`.
    pub async fn text_where(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Frame::Text(t)) if pred(&t) => return t,
                Some(Frame::Eof) | Some(Frame::Close) => panic!("closed while waiting"),
                Some(_) => {}
                None => panic!("no matching frame within {timeout:?}"),
            }
        }
    }
}

/// Waits until `cond` holds, polling, within `timeout`.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
