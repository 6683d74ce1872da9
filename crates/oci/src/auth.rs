//! Credentials, read the way container tools keep them, and the registry's challenges.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::OciError;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token. Never printed.
    pub password: String,
    /// The file they came from, for messages.
    pub file: PathBuf,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("file", &self.file)
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` header's value for HTTP basic authentication.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// The credential files container tools read, in the order they read them, as found from
/// these environment variables (pass `std::env::var_os` or a test's own map): podman's and
/// skopeo's `REGISTRY_AUTH_FILE`, then `$XDG_RUNTIME_DIR/containers/auth.json`, then
/// Docker's `$DOCKER_CONFIG/config.json` or `$HOME/.docker/config.json`.
///
/// ```
/// use std::path::PathBuf;
/// let env = |name: &str| (name == "HOME").then(|| "/home/me".into());
/// assert_eq!(kiln_oci::credential_files(env), [PathBuf::from("/home/me/.docker/config.json")]);
/// ```
pub fn credential_files(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = env("REGISTRY_AUTH_FILE").filter(|value| !value.is_empty()) {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|value| !value.is_empty()) {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    if let Some(dir) = env("DOCKER_CONFIG").filter(|value| !value.is_empty()) {
        files.push(Path::new(&dir).join("config.json"));
    } else if let Some(home) = env("HOME").filter(|value| !value.is_empty()) {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// The credentials for `registry` (`HOST[:PORT]`) in a credential file's text (`file` names
/// it in messages): the `auths` entry whose key, without any `http://` or `https://` and any
/// path, is `registry`, holding `auth` (base64 of `user:password`) or `username` and
/// `password`. `None` if the file has no entry for it.
///
/// # Errors
///
/// [`OciError::Credentials`] if the text is not such a file, if the entry cannot be decoded,
/// or if the entry is left to a credential helper (`credHelpers`, `credsStore`), which kiln
/// does not run.
///
/// ```
/// let text = r#"{"auths": {"https://127.0.0.1:5000/v1/": {"auth": "a2lsbjpzZWNyZXQ="}}}"#;
/// let found = kiln_oci::credentials_in(text, "/x.json".as_ref(), "127.0.0.1:5000").unwrap();
/// let found = found.expect("an entry");
/// assert_eq!((found.username.as_str(), found.password.as_str()), ("kiln", "secret"));
/// assert!(kiln_oci::credentials_in(text, "/x.json".as_ref(), "other:5000").unwrap().is_none());
/// ```
pub fn credentials_in(
    text: &str,
    file: &Path,
    registry: &str,
) -> Result<Option<Credentials>, OciError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
        #[serde(default)]
        cred_helpers: BTreeMap<String, String>,
        #[serde(default)]
        creds_store: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let error = |reason: String| OciError::Credentials {
        path: file.to_owned(),
        reason,
    };
    let config: Config = serde_json::from_str(text).map_err(|e| error(e.to_string()))?;
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| registry_of(key) == registry)
        .map(|(_, entry)| entry);
    let Some(entry) = entry else {
        if config.cred_helpers.contains_key(registry) || config.creds_store.is_some() {
            return Err(error(format!(
                "{registry}'s credentials are kept by a credential helper, which kiln does not \
                 run; give them in a file of their own through REGISTRY_AUTH_FILE"
            )));
        }
        return Ok(None);
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|e| error(format!("{registry}'s \"auth\" is not base64: {e}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| error(format!("{registry}'s \"auth\" is not UTF-8")))?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                error(format!(
                    "{registry}'s \"auth\" is not base64 of user:password"
                ))
            })?;
            (user.to_owned(), password.to_owned())
        }
        (_, Some(user), Some(password)) => (user.clone(), password.clone()),
        _ => {
            return Err(error(format!(
                "{registry}'s entry has neither \"auth\" nor \"username\" and \"password\""
            )));
        }
    };
    Ok(Some(Credentials {
        username,
        password,
        file: file.to_owned(),
    }))
}

/// `HOST[:PORT]` of a credential file's key (`https://HOST[:PORT]/v1/`, `HOST[:PORT]`, ...).
fn registry_of(key: &str) -> &str {
    let bare = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    bare.split('/').next().unwrap_or(bare)
}

/// One `WWW-Authenticate` challenge: its scheme (`basic`, `bearer`, lower-cased) and its
/// parameters (names lower-cased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased.
    pub scheme: String,
    /// The parameters (`realm`, `service`, `scope`, ...), names lower-cased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header holding one challenge:
    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
    ///
    /// ```
    /// let challenge = kiln_oci::Challenge::parse(r#"Bearer realm="https://a/t",service="r""#)
    ///     .unwrap();
    /// assert_eq!(challenge.scheme, "bearer");
    /// assert_eq!(challenge.params["realm"], "https://a/t");
    /// assert_eq!(kiln_oci::Challenge::parse("Basic realm=\"x, y\"").unwrap().params["realm"], "x, y");
    /// ```
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=')?;
            let name = name
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((index, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = Some(index + 1);
                            break;
                        }
                        other => value.push(other),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.insert(name, value);
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_by_every_key_form() {
        for key in ["h:5", "http://h:5", "https://h:5/v1/", "https://h:5"] {
            let text =
                format!(r#"{{"auths": {{"{key}": {{"username": "u", "password": "p:q"}}}}}}"#);
            let found = credentials_in(&text, Path::new("f"), "h:5").expect("parses");
            let found = found.expect(key);
            assert_eq!(
                (found.username.as_str(), found.password.as_str()),
                ("u", "p:q")
            );
            assert!(
                !format!("{found:?}").contains("p:q"),
                "the password is never printed"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (text, says) in [
            ("[", "EOF"),
            (r#"{"auths": {"h": {"auth": "%%%"}}}"#, "not base64"),
            (
                r#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#,
                "user:password",
            ),
            (r#"{"auths": {"h": {}}}"#, "neither"),
            (r#"{"credsStore": "desktop"}"#, "credential helper"),
            (
                r#"{"credHelpers": {"h": "ecr-login"}}"#,
                "credential helper",
            ),
        ] {
            let message = credentials_in(text, Path::new("/c.json"), "h")
                .expect_err(text)
                .to_string();
            assert!(message.contains(says), "{text}: {message}");
            assert!(message.contains("/c.json"), "{message}");
        }
        assert_eq!(
            credentials_in("{}", Path::new("f"), "h").expect("empty"),
            None
        );
    }

    #[test]
    fn challenges() {
        let bearer = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .expect("bearer");
        assert_eq!(bearer.params["scope"], "repository:a/b:pull,push");
        assert_eq!(bearer.params["service"], "registry.example");
        let bare = Challenge::parse("Basic").expect("basic");
        assert_eq!(bare.scheme, "basic");
        assert!(bare.params.is_empty());
        let unquoted = Challenge::parse("Bearer realm=https://a/t, service=s").expect("tokens");
        assert_eq!(unquoted.params["service"], "s");
        assert_eq!(Challenge::parse("Bearer realm=\"open"), None);
        assert_eq!(Challenge::parse(""), None);
    }
}
