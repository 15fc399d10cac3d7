//! Console sessions, held by the agent that served the login: the cookie carries a random id,
//! never the token. The agent keeps the hash of the token the session was opened with and when
//! it ends; logging out ends it here, and a revoked or expired token ends it at the next
//! request (the caller is looked up afresh from the token every time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Open sessions one agent keeps at most; past it, the one ending soonest is closed.
const MAX_OPEN: usize = 1024;

#[derive(Default)]
pub struct Sessions {
    /// By the SHA-256 of the session id: a leaked memory dump holds no usable cookie.
    open: Mutex<HashMap<String, Session>>,
}

struct Session {
    token_sha256: String,
    until: Instant,
}

impl Sessions {
    /// A new session for the token hashing to `token_sha256`, lasting `lifetime`; its id.
    pub fn open(&self, token_sha256: String, lifetime: Duration) -> String {
        let id = halo_security::random_secret();
        let now = Instant::now();
        if let Ok(mut open) = self.open.lock() {
            open.retain(|_, s| s.until > now);
            if open.len() >= MAX_OPEN
                && let Some(soonest) = open.iter().min_by_key(|(_, s)| s.until).map(|(k, _)| k.clone())
            {
                open.remove(&soonest);
            }
            open.insert(halo_security::sha256_hex(&id), Session { token_sha256, until: now + lifetime });
        }
        id
    }

    /// The hash of the token behind session `id`, while it lasts.
    pub fn token_of(&self, id: &str) -> Option<String> {
        let open = self.open.lock().ok()?;
        open.get(&halo_security::sha256_hex(id)).filter(|s| s.until > Instant::now()).map(|s| s.token_sha256.clone())
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&halo_security::sha256_hex(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lasts_its_lifetime_or_until_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("t".into(), Duration::from_secs(60));
        assert_eq!(sessions.token_of(&id).as_deref(), Some("t"));
        assert_eq!(sessions.token_of("forged"), None);
        sessions.close(&id);
        assert_eq!(sessions.token_of(&id), None);
        let brief = sessions.open("t".into(), Duration::ZERO);
        assert_eq!(sessions.token_of(&brief), None, "ended");
    }
}
