//! Health probes of `process` resources (parameter `probe`): beyond "the process is alive",
//! `tcp:HOST:PORT` (a connection is accepted), `http://HOST:PORT/PATH` (a 2xx or 3xx answer)
//! or `cmd:COMMAND` (exit 0, through `/bin/sh -c`). Each run is bounded by the resource's
//! monitor timeout; a failure counts like an exit against the restart policy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::DiesWithParent;

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp(String),
    Http { address: String, host: String, path: String },
    Command(String),
}

impl Probe {
    pub fn parse(text: &str) -> Result<Self, String> {
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
        Err(format!("invalid probe '{text}': use tcp:HOST:PORT, http://HOST:PORT/PATH or cmd:COMMAND"))
    }

    /// Run once; Err says what failed.
    pub async fn run(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(format!("probe {self} did not answer within {} ms", timeout.as_millis())),
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        match self {
            Probe::Tcp(address) => {
                tokio::net::TcpStream::connect(address).await.map(|_| ()).map_err(|e| format!("probe {self}: {e}"))
            }
            Probe::Http { address, host, path } => {
                let mut stream =
                    tokio::net::TcpStream::connect(address).await.map_err(|e| format!("probe {self}: {e}"))?;
                let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: halo-probe\r\n\r\n");
                stream.write_all(request.as_bytes()).await.map_err(|e| format!("probe {self}: {e}"))?;
                let mut head = vec![0u8; 64];
                let n = stream.read(&mut head).await.map_err(|e| format!("probe {self}: {e}"))?;
                let line = String::from_utf8_lossy(&head[..n]);
                let status = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
                match status {
                    Some(code) if (200..400).contains(&code) => Ok(()),
                    Some(code) => Err(format!("probe {self}: HTTP {code}")),
                    None => Err(format!("probe {self}: not an HTTP answer")),
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
                    .map_err(|e| format!("probe {self}: {e}"))?;
                if status.success() { Ok(()) } else { Err(format!("probe {self}: {status}")) }
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
        assert_eq!(Probe::parse("tcp:127.0.0.1:80"), Ok(Probe::Tcp("127.0.0.1:80".into())));
        assert_eq!(
            Probe::parse("http://localhost:8080/health"),
            Ok(Probe::Http { address: "localhost:8080".into(), host: "localhost".into(), path: "/health".into() })
        );
        assert_eq!(
            Probe::parse("http://example"),
            Ok(Probe::Http { address: "example:80".into(), host: "example".into(), path: "/".into() })
        );
        assert_eq!(Probe::parse("cmd:true"), Ok(Probe::Command("true".into())));
        assert!(Probe::parse("ping:x").is_err());
    }
}
