//! Health probes of `process` resources (parameter `probe`): beyond "the process is alive",
//! `tcp:HOST:PORT` (a connection is accepted), `http://HOST:PORT/PATH` (a 2xx or 3xx answer)
//! or `cmd:COMMAND` (exit 0, through `/bin/sh -c`). Each run is bounded by the resource's
//! monitor timeout; a failure counts like an exit against the restart policy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::DiesWithParent;

/// Why a probe did not pass, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid probe '{0}': use tcp:HOST:PORT, http://HOST:PORT/PATH or cmd:COMMAND")]
    Invalid(String),
    #[error("probe {probe} did not answer within {ms} ms")]
    Timeout { probe: String, ms: u128 },
    #[error("probe {probe}: {source}")]
    Io { probe: String, source: std::io::Error },
    #[error("probe {probe}: HTTP {code}")]
    HttpStatus { probe: String, code: u16 },
    #[error("probe {probe}: not an HTTP answer")]
    NotHttp { probe: String },
    #[error("probe {probe}: {status}")]
    CommandFailed { probe: String, status: std::process::ExitStatus },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp(String),
    Http { address: String, host: String, path: String },
    Command(String),
}

impl Probe {
    pub fn parse(text: &str) -> Result<Self, ProbeError> {
        if let Some(address) = text.strip_prefix("tcp:") {
            return Ok(Probe::Tcp(address.to_string()));
        }
        if let Some(rest) = text.strip_prefix("http://") {
            let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
            let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
            let host = authority.split(':').next().unwrap_or(authority).to_string();
            return Ok(Probe::Http { address, host, path });
        }
        if let Some(command) = text.strip_prefix("cmd:") {
            return Ok(Probe::Command(command.to_string()));
        }
        Err(ProbeError::Invalid(text.to_string()))
    }

    /// Run once; Err says what failed.
    pub async fn run(&self, timeout: Duration) -> Result<(), ProbeError> {
        match tokio::time::timeout(timeout, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout { probe: self.to_string(), ms: timeout.as_millis() }),
        }
    }

    async fn attempt(&self) -> Result<(), ProbeError> {
        let io = |source| ProbeError::Io { probe: self.to_string(), source };
        match self {
            Probe::Tcp(address) => tokio::net::TcpStream::connect(address).await.map(|_| ()).map_err(io),
            Probe::Http { address, host, path } => {
                let mut stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
                let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: halo-probe\r\n\r\n");
                stream.write_all(request.as_bytes()).await.map_err(io)?;
                let mut head = vec![0u8; 64];
                let n = stream.read(&mut head).await.map_err(io)?;
                let line = String::from_utf8_lossy(&head[..n]);
                let status = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
                match status {
                    Some(code) if (200..400).contains(&code) => Ok(()),
                    Some(code) => Err(ProbeError::HttpStatus { probe: self.to_string(), code }),
                    None => Err(ProbeError::NotHttp { probe: self.to_string() }),
                }
            }
            Probe::Command(command) => {
                let status = tokio::process::Command::new("/bin/sh")
                    .args(["-c", command])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .dies_with_parent()
                    .status()
                    .await
                    .map_err(io)?;
                if status.success() {
                    Ok(())
                } else {
                    Err(ProbeError::CommandFailed { probe: self.to_string(), status })
                }
            }
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Tcp(a) => write!(f, "tcp:{a}"),
            Probe::Http { address, path, .. } => write!(f, "http://{address}{path}"),
            Probe::Command(c) => write!(f, "cmd:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        assert_eq!(Probe::parse("tcp:127.0.0.1:80").ok(), Some(Probe::Tcp("127.0.0.1:80".into())));
        assert_eq!(
            Probe::parse("http://localhost:8080/health").ok(),
            Some(Probe::Http { address: "localhost:8080".into(), host: "localhost".into(), path: "/health".into() })
        );
        assert_eq!(
            Probe::parse("http://example").ok(),
            Some(Probe::Http { address: "example:80".into(), host: "example".into(), path: "/".into() })
        );
        assert_eq!(Probe::parse("cmd:true").ok(), Some(Probe::Command("true".into())));
        assert!(matches!(Probe::parse("ping:x"), Err(ProbeError::Invalid(text)) if text == "ping:x"));
    }
}
