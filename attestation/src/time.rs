//! Points in time, passed into every verifier as an argument.
//!
//! Verification never reads the clock: callers decide what "now" is, so an
//! auditor can re-run a verdict at the instant it was first made.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// A timestamp string that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 time such as 2025-03-01T00:00:00Z ({reason})")]
pub struct TimeError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

impl Timestamp {
    /// From seconds since the Unix epoch.
    pub const fn from_unix(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> u64 {
        self.0
    }

    /// Parses an RFC 3339 time (`2025-03-01T00:00:00Z`, offsets allowed).
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimeError> {
        let parsed = DateTime::parse_from_rfc3339(input.trim()).map_err(|e| TimeError {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
        u64::try_from(parsed.timestamp())
            .map(Self)
            .map_err(|_| TimeError {
                input: input.to_owned(),
                reason: "before 1970".to_owned(),
            })
    }

    /// The current time from the system clock. Only binaries call this; the
    /// verification path takes time as an argument.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(secs)
    }

    /// Adds seconds, saturating.
    #[must_use]
    pub const fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Subtracts seconds, saturating at the epoch.
    #[must_use]
    pub const fn minus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// From an X.509 time.
    pub(crate) fn from_x509(time: x509_cert::time::Time) -> Self {
        Self(time.to_unix_duration().as_secs())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = i64::try_from(self.0).unwrap_or(i64::MAX);
        match DateTime::<Utc>::from_timestamp(secs, 0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            None => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let t = Timestamp::parse_rfc3339("2025-03-01T00:00:00Z").unwrap();
        assert_eq!(t.unix(), 1_740_787_200);
        assert_eq!(t.to_string(), "2025-03-01T00:00:00Z");
        let with_offset = Timestamp::parse_rfc3339("2025-03-01T02:00:00+02:00").unwrap();
        assert_eq!(with_offset, t);
    }

    #[test]
    fn rejects_non_rfc3339_text() {
        let err = Timestamp::parse_rfc3339("yesterday").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"));
        assert!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").is_err());
    }
}
