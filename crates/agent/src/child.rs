//! Every process the agent or the fence guard starts dies with the one that started it, so a
//! crashed, killed or hung-then-killed halo leaves nothing running: no workload outlives its
//! fence guard, and no probe, fence agent or QEMU probe outlives its agent.
//!
//! The kernel does it (`PR_SET_PDEATHSIG` = SIGKILL), set in the child between fork and exec.
//! The signal follows the *thread* that forked, so children are started only from threads that
//! live as long as their process's interest in them: the guard's main loop, the agent's runtime
//! workers, or a thread that waits for the child itself. It is not inherited across a further
//! fork: a grandchild (an OCF agent's daemon, a shell's pipeline) is swept by the guard's
//! marker instead (see `guard`).
#![allow(unsafe_code)]

use std::io;
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Marks a command so that its process is killed when its parent dies.
pub trait DiesWithParent {
    fn dies_with_parent(&mut self) -> &mut Self;
}

impl DiesWithParent for std::process::Command {
    fn dies_with_parent(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec. It allocates nothing and
        // makes only async-signal-safe system calls (prctl, getppid).
        unsafe { self.pre_exec(move || after_fork(parent)) }
    }
}

impl DiesWithParent for tokio::process::Command {
    fn dies_with_parent(&mut self) -> &mut Self {
        let parent = std::process::id();
        // SAFETY: as above.
        unsafe { self.pre_exec(move || after_fork(parent)) }
    }
}

/// Everything the agent and its fence guard create is readable by their user only: the data
/// directory holds the cluster CA's key, the heartbeat key and fence passwords (in the
/// database), node keys and secrets. Set once at start, before any file exists, so nothing is
/// ever created open and tightened afterwards. Workloads start with their own mask
/// ([`Umask`]).
pub fn keep_files_private() {
    nix::sys::stat::umask(Umask::Private.mode());
}

/// The file-creation mask a child starts with. The agent and its guard create everything
/// private ([`keep_files_private`]); a workload gets what a service manager
/// gives a service, unless it keeps its files private too (a VM: its serial log, its sockets).
pub trait StartsWithUmask {
    fn starts_with_umask(&mut self, mask: Umask) -> &mut Self;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Umask {
    /// 022: files others may read, as systemd gives a service.
    Service,
    /// 077: files only their owner may read.
    Private,
}

impl Umask {
    pub fn mode(self) -> nix::sys::stat::Mode {
        let bits = match self {
            Umask::Service => 0o022,
            Umask::Private => 0o077,
        };
        nix::sys::stat::Mode::from_bits_truncate(bits)
    }
}

impl StartsWithUmask for std::process::Command {
    fn starts_with_umask(&mut self, mask: Umask) -> &mut Self {
        use std::os::unix::process::CommandExt;
        let mode = mask.mode();
        // SAFETY: the closure runs in the forked child before exec; umask is async-signal-safe
        // and allocates nothing.
        unsafe {
            self.pre_exec(move || {
                nix::sys::stat::umask(mode);
                Ok(())
            })
        }
    }
}

fn after_fork(parent: u32) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
    // The parent may have died before the line above: then nobody would ever kill us.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(io::Error::other("the parent exited before the child started"));
    }
    Ok(())
}

/// Run `command` to completion, but for at most `limit`: past it the child is killed and the
/// run fails. Blocking: call it from a thread of its own or `spawn_blocking`.
pub fn output_within(command: &mut std::process::Command, limit: Duration) -> io::Result<Output> {
    use std::io::Read;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .dies_with_parent()
        .spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("did not finish within {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Small outputs only (version lines): the pipes hold them until read.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr)?;
    }
    Ok(Output { status, stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        // A thread starts a long sleep and exits: the sleep must die with it.
        let mut child = std::thread::spawn(|| {
            std::process::Command::new("sleep").arg("60").dies_with_parent().spawn().expect("sleep")
        })
        .join()
        .expect("thread");
        let gone = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            child.try_wait().expect("wait").is_some()
        });
        if !gone {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(gone, "the child outlived the thread that started it");
    }

    #[test]
    fn a_run_past_its_limit_is_killed() {
        let started = Instant::now();
        let err = output_within(std::process::Command::new("sleep").arg("30"), Duration::from_millis(200))
            .expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        let out = output_within(std::process::Command::new("echo").arg("hi"), Duration::from_secs(5)).expect("echo");
        assert_eq!(out.stdout, b"hi\n");
    }
}
