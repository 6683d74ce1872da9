//! Kubernetes versions and the range kiln supports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The oldest Kubernetes minor version kiln renders configuration for.
pub const OLDEST_SUPPORTED_MINOR: u32 = 20;
/// The newest Kubernetes minor version kiln renders configuration for.
pub const NEWEST_SUPPORTED_MINOR: u32 = 37;

/// A Kubernetes release version, `MAJOR.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// Always 1 for supported releases.
    pub major: u32,
    /// The minor release, which decides which flags exist.
    pub minor: u32,
    /// The patch release.
    pub patch: u32,
}

impl KubeVersion {
    /// Whether kiln can render configuration for this version.
    pub fn is_supported(&self) -> bool {
        self.major == 1 && (OLDEST_SUPPORTED_MINOR..=NEWEST_SUPPORTED_MINOR).contains(&self.minor)
    }

    /// The supported range in words, for error messages.
    pub fn supported_range() -> String {
        format!("1.{OLDEST_SUPPORTED_MINOR}.0 through 1.{NEWEST_SUPPORTED_MINOR}.x")
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `MAJOR.MINOR.PATCH`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a version of the form MAJOR.MINOR.PATCH (for example 1.20.2)")]
pub struct ParseVersionError(String);

impl FromStr for KubeVersion {
    type Err = ParseVersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseVersionError(text.to_owned());
        let trimmed = text.strip_prefix('v').unwrap_or(text);
        let mut parts = trimmed.split('.');
        let mut next = || -> Result<u32, ParseVersionError> {
            let part = parts.next().ok_or_else(error)?;
            if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(error());
            }
            part.parse().map_err(|_| error())
        };
        let version = KubeVersion {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        if parts.next().is_some() {
            return Err(error());
        }
        Ok(version)
    }
}

impl Serialize for KubeVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_described_in_words() {
        assert_eq!(KubeVersion::supported_range(), "1.20.0 through 1.37.x");
    }

    #[test]
    fn parses_and_checks_support() {
        let version: KubeVersion = "1.20.2".parse().expect("valid");
        assert_eq!(
            version,
            KubeVersion {
                major: 1,
                minor: 20,
                patch: 2
            }
        );
        assert!(version.is_supported());
        assert_eq!(
            "v1.32.0".parse::<KubeVersion>().map(|v| v.is_supported()),
            Ok(true)
        );
        assert_eq!(
            "1.37.2".parse::<KubeVersion>().map(|v| v.is_supported()),
            Ok(true)
        );
        assert_eq!(
            "1.19.9".parse::<KubeVersion>().map(|v| v.is_supported()),
            Ok(false)
        );
        assert_eq!(
            "1.38.0".parse::<KubeVersion>().map(|v| v.is_supported()),
            Ok(false)
        );
        for bad in ["", "1.20", "1.20.2.1", "1..2", "1.x.2", "1.20.+2"] {
            assert!(bad.parse::<KubeVersion>().is_err(), "{bad:?}");
        }
    }
}
