//! The watchdog device the fence guard feeds while its node holds a lease: the production
//! safety net SBD and Proxmox rely on. The guard kills every workload and undoes what they
//! left at lease loss; if it cannot (it hangs, dies, or an undo fails), nobody feeds the
//! device and the host is reset. A guard that did clean up disarms it with the magic close
//! ('V'), so a lost lease costs the node its roles, not a reboot.
//!
//! Any file works as a stand-in (the tests use one): each feed writes one byte.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Devices reset the host after 10 s or more without a write (softdog: 60 s); once a second
/// leaves ample room.
pub const FEED_EVERY: Duration = Duration::from_secs(1);

pub struct Watchdog {
    path: PathBuf,
    /// Open: armed.
    device: Option<File>,
    fed: Option<Instant>,
}

impl Watchdog {
    pub fn new(path: PathBuf) -> Self {
        Self { path, device: None, fed: None }
    }

    pub fn armed(&self) -> bool {
        self.device.is_some()
    }

    /// The lease holds: arm the device if it is not, and feed it if a feed is due.
    pub fn feed(&mut self, now: Instant) {
        if self.device.is_none() {
            match std::fs::OpenOptions::new().append(true).open(&self.path) {
                Ok(device) => {
                    eprintln!("fence guard: watchdog {} armed", self.path.display());
                    self.device = Some(device);
                    self.fed = None;
                }
                Err(e) => {
                    eprintln!("fence guard: cannot open watchdog {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if self.fed.is_some_and(|at| now.duration_since(at) < FEED_EVERY) {
            return;
        }
        if let Some(device) = &mut self.device
            && device.write_all(b".").and_then(|()| device.flush()).is_ok()
        {
            self.fed = Some(now);
        }
    }

    /// Everything was cleaned up after a lease loss (or nothing ran): the magic close.
    pub fn disarm(&mut self) {
        if let Some(mut device) = self.device.take() {
            let _ = device.write_all(b"V").and_then(|()| device.flush());
            eprintln!("fence guard: watchdog {} disarmed", self.path.display());
        }
    }
}
