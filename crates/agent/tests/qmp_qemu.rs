//! The QMP client against a real QEMU (installed by scripts/setup): greeting, capabilities,
//! commands, a refused command, events, and QEMU quitting on request.

use std::process::{Command, Stdio};
use std::time::Duration;

use halo_agent::workload::vm::qmp::{Qmp, QmpError};

#[tokio::test]
async fn talks_to_a_real_qemu() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("qmp.sock");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/setup installs it)");
    let limit = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + limit;
    while !socket.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut qmp = Qmp::connect(&socket, limit).await.expect("handshake");
    assert!(
        qmp.version.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 7),
        "{}",
        qmp.version
    );
    let status = qmp.execute("query-status", None, limit).await.expect("query-status");
    assert_eq!(status["status"], "prelaunch", "{status}");
    let refused = qmp.execute("no-such-command", None, limit).await.unwrap_err();
    assert!(matches!(refused, QmpError::Refused { ref class, .. } if class == "CommandNotFound"), "{refused}");
    qmp.execute("stop", None, limit).await.expect("stop");
    qmp.execute("quit", None, limit).await.expect("quit");
    let event = qmp.wait_event("SHUTDOWN", limit).await.expect("SHUTDOWN event");
    assert_eq!(event.data["guest"], false, "{:?}", event.data);
    let status = tokio::task::spawn_blocking(move || qemu.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "{status}");
}
