//! Per-address rate limit of the routes anyone may call before presenting a credential (join,
//! bootstrap, console login): a stranger can make each of them cost a signature check, a
//! forwarded request or a hash, so each source address gets a small burst and then a slow
//! trickle. Authenticated routes are not limited here.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AgentError;
use crate::transport::serve::RemoteAddr;

/// Requests an address may make at once, then `PER_SECOND` more each second.
const BURST: u32 = 10;
const PER_SECOND: u32 = 1;
/// Above this many tracked addresses, those back at a full burst are forgotten.
const TRACKED: usize = 4096;

pub struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(BURST, PER_SECOND)
    }
}

impl Throttle {
    pub fn new(burst: u32, per_second: u32) -> Self {
        let (Some(burst), Some(rate)) = (NonZeroU32::new(burst), NonZeroU32::new(per_second)) else {
            panic!("a throttle needs a burst and a rate above zero");
        };
        Self { limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)), clock: DefaultClock::default() }
    }

    /// `Err(seconds to wait)` once `remote` has spent its burst.
    pub fn admit(&self, remote: IpAddr) -> Result<(), u64> {
        if self.limiter.len() > TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client(remote))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }
}

/// The unit one client controls: an IPv4 address, or an IPv6 /64 (one host gets a whole /64).
pub(crate) fn client(remote: IpAddr) -> IpAddr {
    match remote {
        IpAddr::V4(_) => remote,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// Middleware: refuses with 429 and `Retry-After` once the caller's address spent its burst.
pub async fn limit(State(throttle): State<Arc<Throttle>>, request: Request, next: Next) -> Response {
    let Some(RemoteAddr(remote)) = request.extensions().get::<RemoteAddr>().copied() else {
        return AgentError::internal("no remote address on the request").into_response();
    };
    match throttle.admit(remote.ip()) {
        Ok(()) => next.run(request).await,
        Err(wait_s) => {
            let message = format!(
                "too many requests from {} to routes that need no credential; retry in {wait_s} s",
                remote.ip()
            );
            let mut response = AgentError::TooManyRequests(message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_waits_and_others_are_not_affected() {
        let throttle = Throttle::new(3, 1);
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        for _ in 0..3 {
            assert_eq!(throttle.admit(a), Ok(()));
        }
        let wait = throttle.admit(a).expect_err("burst spent");
        assert!((1..=2).contains(&wait), "{wait}");
        assert_eq!(throttle.admit("192.0.2.2".parse().expect("address")), Ok(()));
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64_and_mapped_ipv4_is_its_ipv4() {
        let throttle = Throttle::new(1, 1);
        assert_eq!(throttle.admit("2001:db8::1".parse().expect("address")), Ok(()));
        assert!(throttle.admit("2001:db8::ffff:2".parse().expect("address")).is_err());
        assert_eq!(throttle.admit("2001:db8:0:1::1".parse().expect("address")), Ok(()));
        assert_eq!(throttle.admit("198.51.100.7".parse().expect("address")), Ok(()));
        assert!(throttle.admit("::ffff:198.51.100.7".parse().expect("address")).is_err());
    }
}
