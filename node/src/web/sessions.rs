//! Web sessions, CSRF tokens and the login rate limit, all in memory.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure when the
//! console is served over TLS), bound to one officer and carrying its own CSRF token, which every
//! form must send back. Sessions end at logout, after [`IDLE_TIMEOUT`] without a request, and
//! when the officer's account is removed or its password changed. The table is bounded
//! ([`MAX_SESSIONS`]): when full, the least recently used session ends.
//!
//! Logins are limited per account and per client address: [`MAX_FAILURES_PER_ACCOUNT`] and
//! [`MAX_FAILURES_PER_ADDRESS`] failures within [`FAILURE_WINDOW`] lock further attempts until the
//! oldest failure leaves the window. The failure tables are bounded too.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 256;
/// Failed logins per account within the window before that account is locked.
pub const MAX_FAILURES_PER_ACCOUNT: usize = 5;
/// Failed logins per client address within the window before that address is locked.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// The window the failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most accounts and addresses whose failures are remembered.
pub const MAX_TRACKED: usize = 4096;

/// A random token as 64 hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Compares two strings in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One logged-in officer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The officer's name.
    pub officer: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// The password hash at login: a changed password ends the session.
    pub password_hash: String,
    /// Last request.
    pub last_seen: Instant,
}

/// Every open session.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
}

impl Sessions {
    /// Opens a session for `officer`; returns the cookie token.
    pub fn open(&mut self, officer: &str, password_hash: &str, now: Instant) -> String {
        self.expire(now);
        while self.by_token.len() >= MAX_SESSIONS {
            let oldest = self
                .by_token
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(token, _)| token.clone());
            match oldest {
                Some(token) => {
                    self.by_token.remove(&token);
                }
                None => break,
            }
        }
        let token = random_token();
        self.by_token.insert(
            token.clone(),
            Session {
                officer: officer.to_string(),
                csrf: random_token(),
                password_hash: password_hash.to_string(),
                last_seen: now,
            },
        );
        token
    }

    /// The session behind `token`, if it is open and not idle too long; marks it used.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<Session> {
        let session = self.by_token.get_mut(token)?;
        if now.saturating_duration_since(session.last_seen) > IDLE_TIMEOUT {
            self.by_token.remove(token);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// The session behind `token` if it is open, without counting this as use (live updates
    /// must not keep an unattended session open forever).
    pub fn peek(&self, token: &str, now: Instant) -> Option<Session> {
        self.by_token
            .get(token)
            .filter(|session| now.saturating_duration_since(session.last_seen) <= IDLE_TIMEOUT)
            .cloned()
    }

    /// Ends the session behind `token`.
    pub fn close(&mut self, token: &str) -> Option<Session> {
        self.by_token.remove(token)
    }

    /// Drops idle sessions.
    pub fn expire(&mut self, now: Instant) {
        self.by_token
            .retain(|_, session| now.saturating_duration_since(session.last_seen) <= IDLE_TIMEOUT);
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Why a login attempt is not even checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locked {
    /// Too many failures for this account.
    Account(Duration),
    /// Too many failures from this address.
    Address(Duration),
}

/// Failed logins per account and per address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    accounts: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
}

fn prune(failures: &mut VecDeque<Instant>, now: Instant) {
    while failures
        .front()
        .is_some_and(|first| now.saturating_duration_since(*first) >= FAILURE_WINDOW)
    {
        failures.pop_front();
    }
}

fn wait(failures: &VecDeque<Instant>, now: Instant) -> Duration {
    failures
        .front()
        .map(|first| FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(*first)))
        .unwrap_or_default()
}

impl LoginLimiter {
    /// Whether an attempt for `account` from `address` may be checked now.
    pub fn check(&mut self, account: &str, address: IpAddr, now: Instant) -> Result<(), Locked> {
        if let Some(failures) = self.addresses.get_mut(&address) {
            prune(failures, now);
            if failures.len() >= MAX_FAILURES_PER_ADDRESS {
                return Err(Locked::Address(wait(failures, now)));
            }
        }
        if let Some(failures) = self.accounts.get_mut(account) {
            prune(failures, now);
            if failures.len() >= MAX_FAILURES_PER_ACCOUNT {
                return Err(Locked::Account(wait(failures, now)));
            }
        }
        Ok(())
    }

    /// Counts a failed attempt.
    pub fn failed(&mut self, account: &str, address: IpAddr, now: Instant) {
        if self.accounts.len() >= MAX_TRACKED || self.addresses.len() >= MAX_TRACKED {
            self.accounts.retain(|_, failures| {
                prune(failures, now);
                !failures.is_empty()
            });
            self.addresses.retain(|_, failures| {
                prune(failures, now);
                !failures.is_empty()
            });
        }
        // Still full of live failures: keep counting the ones already tracked only, so the
        // table stays bounded; the address limit still applies to every known address.
        if self.accounts.len() < MAX_TRACKED || self.accounts.contains_key(account) {
            let failures = self.accounts.entry(account.to_string()).or_default();
            failures.push_back(now);
            if failures.len() > MAX_FAILURES_PER_ACCOUNT {
                failures.pop_front();
            }
        }
        if self.addresses.len() < MAX_TRACKED || self.addresses.contains_key(&address) {
            let failures = self.addresses.entry(address).or_default();
            failures.push_back(now);
            if failures.len() > MAX_FAILURES_PER_ADDRESS {
                failures.pop_front();
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn succeeded(&mut self, account: &str) {
        self.accounts.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_and_at_logout() {
        let mut sessions = Sessions::default();
        let start = Instant::now();
        let token = sessions.open("ana", "h", start);
        let session = sessions
            .touch(&token, start + Duration::from_secs(60))
            .expect("open");
        assert_eq!(session.officer, "ana");
        assert_eq!(session.csrf.len(), 64);
        // Idle for longer than the timeout after the last use: gone.
        assert!(sessions
            .touch(
                &token,
                start + Duration::from_secs(60) + IDLE_TIMEOUT + Duration::from_secs(1)
            )
            .is_none());
        let token = sessions.open("ana", "h", start);
        assert!(sessions.close(&token).is_some());
        assert!(sessions.touch(&token, start).is_none());
        assert!(sessions.touch("forged", start).is_none());
    }

    #[test]
    fn the_session_table_is_bounded() {
        let mut sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.open("a", "h", start);
        for i in 0..MAX_SESSIONS {
            sessions.open("b", "h", start + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions
            .touch(&first, start + Duration::from_secs(1))
            .is_none());
    }

    #[test]
    fn logins_lock_per_account_and_per_address() {
        let mut limiter = LoginLimiter::default();
        let now = Instant::now();
        let here: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            assert!(limiter.check("ana", here, now).is_ok());
            limiter.failed("ana", here, now);
        }
        assert!(matches!(
            limiter.check("ana", here, now),
            Err(Locked::Account(_))
        ));
        // Another account from the same address is still allowed (address limit is higher)...
        assert!(limiter.check("bob", here, now).is_ok());
        // ...and the lock lifts once the failures leave the window.
        assert!(limiter.check("ana", here, now + FAILURE_WINDOW).is_ok());

        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            limiter.failed(&format!("user{i}"), other, now);
        }
        assert!(matches!(
            limiter.check("carla", other, now),
            Err(Locked::Address(_))
        ));
        assert!(limiter.check("carla", here, now).is_ok());
    }

    #[test]
    fn token_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
