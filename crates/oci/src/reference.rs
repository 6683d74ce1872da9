//! Where artifacts go: `oci://HOST[:PORT]/REPOSITORY`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::OciError;

/// The scheme that marks a registry where a store directory could also be named.
pub const SCHEME: &str = "oci://";

/// A repository in a registry, as `oci://HOST[:PORT]/REPOSITORY` names it.
///
/// kiln talks HTTPS to a registry, and plain HTTP only to a loopback address (`localhost`,
/// `127.0.0.0/8`, `[::1]`), as container tools do, or to one marked insecure
/// ([`Repository::insecure`]).
///
/// ```
/// use kiln_oci::Repository;
///
/// let repository = Repository::parse("oci://127.0.0.1:5000/kiln/store").unwrap();
/// assert_eq!(repository.registry(), "127.0.0.1:5000");
/// assert_eq!(repository.name(), "kiln/store");
/// assert_eq!(repository.url("tags/list"), "http://127.0.0.1:5000/v2/kiln/store/tags/list");
/// assert_eq!(repository.to_string(), "oci://127.0.0.1:5000/kiln/store");
///
/// let remote = Repository::parse("oci://registry.example:443/team/kiln").unwrap();
/// assert!(remote.url("x").starts_with("https://"));
/// assert!(Repository::parse("oci://Registry/UPPER").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repository {
    host: String,
    port: Option<u16>,
    name: String,
    plain_http: bool,
}

impl Repository {
    /// Parses `oci://HOST[:PORT]/REPOSITORY`. `HOST` is a DNS name, an IPv4 address or a
    /// bracketed IPv6 address; `REPOSITORY` is the distribution specification's name: lower-case
    /// path components of letters and digits joined by `.`, `_`, `__` or dashes.
    ///
    /// # Errors
    ///
    /// [`OciError::Reference`], saying which part is wrong.
    pub fn parse(input: &str) -> Result<Repository, OciError> {
        let error = |reason: &str| OciError::Reference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| error("it does not start with oci://"))?;
        let (authority, name) = rest
            .split_once('/')
            .ok_or_else(|| error("no repository after the host"))?;
        let (host, port) = split_authority(authority).map_err(|reason| error(&reason))?;
        check_name(name).map_err(|reason| error(&reason))?;
        let plain_http = is_loopback(&host);
        Ok(Repository {
            host,
            port,
            name: name.to_owned(),
            plain_http,
        })
    }

    /// This repository, reached over plain HTTP even though it is not on a loopback address
    /// (the user marked it insecure).
    #[must_use]
    pub fn insecure(mut self) -> Repository {
        self.plain_http = true;
        self
    }

    /// `HOST[:PORT]`, as credential files and `KILN_INSECURE_REGISTRIES` name it.
    pub fn registry(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// The repository's name in its registry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether kiln talks plain HTTP to it.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// The URL of `rest` below the repository in the registry's API (`/v2/REPOSITORY/rest`).
    pub fn url(&self, rest: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}/{rest}", self.registry(), self.name)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry(), self.name)
    }
}

/// Whether `host` (as written in a reference: a name, an IPv4 address, or a bracketed IPv6
/// address) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn split_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (address, after) = inner
            .split_once(']')
            .ok_or("an IPv6 address without its closing ]")?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{address:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("only :PORT may follow an IPv6 address")?,
            ),
        };
        (format!("[{address}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-')
    {
        return Err(format!(
            "{host:?} is not a host name (letters, digits, dots and dashes)"
        ));
    }
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("{port:?} is not a port"))
        })
        .transpose()?;
    Ok((host, port))
}

/// The distribution specification's repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
/// components joined by `/`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("no repository after the host".to_owned());
    }
    if name.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_owned());
    }
    for component in name.split('/') {
        let bad = || {
            format!(
                "{component:?} in the repository name is not lower-case letters and digits \
                 joined by '.', '_', '__' or dashes"
            )
        };
        let bytes = component.as_bytes();
        let alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        if !bytes.first().is_some_and(alphanumeric) || !bytes.last().is_some_and(alphanumeric) {
            return Err(bad());
        }
        let mut index = 0;
        while index < bytes.len() {
            if alphanumeric(&bytes[index]) {
                index += 1;
                continue;
            }
            let start = index;
            while index < bytes.len() && !alphanumeric(&bytes[index]) {
                index += 1;
            }
            let separator = &component[start..index];
            let dashes = separator.bytes().all(|byte| byte == b'-');
            if !(separator == "." || separator == "_" || separator == "__" || dashes) {
                return Err(bad());
            }
        }
    }
    Ok(())
}

/// Splits a list of substituters as `KILN_SUBSTITUTERS` holds them: entries separated by `:`,
/// where an `oci://` entry runs to the end of its repository name (its `HOST[:PORT]` may hold
/// colons; a repository name never does). Empty entries are dropped.
///
/// ```
/// assert_eq!(
///     kiln_oci::split_substituters("/a/store:oci://[::1]:5000/kiln:/b"),
///     ["/a/store", "oci://[::1]:5000/kiln", "/b"],
/// );
/// ```
pub fn split_substituters(list: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let end = if let Some(after) = rest.strip_prefix(SCHEME) {
            let authority = after.find('/').unwrap_or(after.len());
            let name_end = after[authority..]
                .find(':')
                .map_or(after.len(), |colon| authority + colon);
            SCHEME.len() + name_end
        } else {
            rest.find(':').unwrap_or(rest.len())
        };
        if end > 0 {
            entries.push(rest[..end].to_owned());
        }
        rest = rest.get(end + 1..).unwrap_or("");
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_names() {
        let ipv6 = Repository::parse("oci://[::1]:5000/a/b").expect("ipv6");
        assert_eq!(ipv6.registry(), "[::1]:5000");
        assert!(ipv6.plain_http());
        let named = Repository::parse("oci://localhost/kiln").expect("localhost");
        assert_eq!(named.url("x"), "http://localhost/v2/kiln/x");
        let remote = Repository::parse("oci://cache.example/org/kiln-store").expect("remote");
        assert!(!remote.plain_http());
        assert!(remote.clone().insecure().plain_http());
        for good in ["a", "a.b", "a_b", "a__b", "a---b", "a/b/c", "0/1"] {
            Repository::parse(&format!("oci://h/{good}")).expect(good);
        }
    }

    #[test]
    fn refuses_what_is_not_a_repository() {
        for (input, says) in [
            ("docker://h/r", "oci://"),
            ("oci://h", "no repository"),
            ("oci://h/", "no repository"),
            ("oci:///r", "no host"),
            ("oci://h:x/r", "not a port"),
            ("oci://h:0/r", "not a port"),
            ("oci://h:70000/r", "not a port"),
            ("oci://[::1/r", "closing ]"),
            ("oci://[zz]/r", "not an IPv6"),
            ("oci://h_h/r", "not a host name"),
            ("oci://h/Upper", "lower-case"),
            ("oci://h/a//b", "lower-case"),
            ("oci://h/a-", "lower-case"),
            ("oci://h/a..b", "lower-case"),
            ("oci://h/a___b", "lower-case"),
            ("oci://h/a:tag", "lower-case"),
        ] {
            let message = Repository::parse(input).expect_err(input).to_string();
            assert!(message.contains(says), "{input}: {message}");
            assert!(message.contains(&format!("{input:?}")), "{message}");
        }
    }

    #[test]
    fn loopback_addresses() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "[::2]", "localhost.example", "example"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn splits_substituter_lists() {
        assert_eq!(split_substituters(""), Vec::<String>::new());
        assert_eq!(split_substituters("::a::"), ["a"]);
        assert_eq!(
            split_substituters("oci://h:1/r:oci://h/s"),
            ["oci://h:1/r", "oci://h/s"]
        );
        assert_eq!(split_substituters("oci://h:1"), ["oci://h:1"]);
    }
}
