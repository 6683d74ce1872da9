//! The distribution protocol, as much of it as kiln needs: blobs and manifests by digest and
//! tag, pushed and pulled streaming, with basic and token authentication.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use ureq::http::{self, Response};
use ureq::{Body, SendBody};

use crate::auth::{Challenge, Credentials};
use crate::reference::is_loopback;
use crate::{OciError, Repository};

/// The media type of the manifests kiln pushes and accepts.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The largest manifest or small blob (config) kiln reads into memory.
const SMALL_LIMIT: u64 = 4 << 20;

/// How long to wait for a connection, and for any one read or write, before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A blob as a manifest names it: `sha256:<hex>` and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<64 hex digits>`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
}

impl Blob {
    /// The blob of `bytes`.
    pub fn of(bytes: &[u8]) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }
}

/// A connection to one repository of a registry. Cheap to share between threads: requests
/// run in parallel over a pool of connections, and an authorization once obtained is reused.
pub struct Client {
    agent: ureq::Agent,
    repository: Repository,
    credentials: Option<Credentials>,
    searched: String,
    authorization: Mutex<Option<String>>,
    transferred: Arc<AtomicU64>,
}

/// What a request sends.
enum Payload<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
    Stream(&'a mut dyn Read),
}

impl Client {
    /// A client for `repository`, authenticating with `credentials` if it asks for them.
    /// `searched` names where credentials were looked for, for the message when the registry
    /// asks and there are none.
    pub fn new(repository: Repository, credentials: Option<Credentials>, searched: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            repository,
            credentials,
            searched: searched.to_owned(),
            authorization: Mutex::new(None),
            transferred: Arc::default(),
        }
    }

    /// How many bytes of blobs this client has sent and received so far, counted as they
    /// stream: for progress reports while a large blob is on its way.
    pub fn transferred(&self) -> u64 {
        self.transferred.load(Ordering::Relaxed)
    }

    /// The repository this client talks to.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The manifest tagged `tag`, or `None` if there is no such tag.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors; a manifest over 4 MiB.
    pub fn manifest(&self, tag: &str) -> Result<Option<Vec<u8>>, OciError> {
        let url = self.repository.url(&format!("manifests/{tag}"));
        let mut response = self.exchange("GET", &url, Some(MANIFEST_MEDIA_TYPE), Payload::Empty)?;
        match response.status().as_u16() {
            200 => read_small(&mut response, "GET", &url).map(Some),
            404 => Ok(None),
            _ => Err(status_error("GET", &url, &mut response)),
        }
    }

    /// Pushes `manifest` (an OCI image manifest) under `tag`.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors (the registry refuses a manifest whose
    /// blobs it lacks).
    pub fn put_manifest(&self, tag: &str, manifest: &[u8]) -> Result<(), OciError> {
        let url = self.repository.url(&format!("manifests/{tag}"));
        let mut response = self.exchange(
            "PUT",
            &url,
            None,
            Payload::Bytes(manifest, MANIFEST_MEDIA_TYPE),
        )?;
        match response.status().as_u16() {
            200..=202 => Ok(()),
            _ => Err(status_error("PUT", &url, &mut response)),
        }
    }

    /// Whether the repository has the blob `digest`.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors.
    pub fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        let url = self.repository.url(&format!("blobs/{digest}"));
        let mut response = self.exchange("HEAD", &url, None, Payload::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error("HEAD", &url, &mut response)),
        }
    }

    /// The blob `blob`, streamed: the reader fails with [`io::ErrorKind::InvalidData`]
    /// (carrying [`OciError::BlobDigest`]) at its end if the bytes are not `blob`'s.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors.
    pub fn blob(&self, blob: &Blob) -> Result<BlobReader, OciError> {
        let url = self.repository.url(&format!("blobs/{}", blob.digest));
        let mut response = self.exchange("GET", &url, None, Payload::Empty)?;
        if response.status().as_u16() != 200 {
            return Err(status_error("GET", &url, &mut response));
        }
        Ok(BlobReader {
            inner: Box::new(response.into_body().into_reader()),
            hasher: Sha256::new(),
            read: 0,
            expected: blob.clone(),
            url,
            checked: false,
            transferred: Arc::clone(&self.transferred),
        })
    }

    /// A small blob (a config) whole, verified.
    ///
    /// # Errors
    ///
    /// As [`Client::blob`]; a blob over 4 MiB; a digest mismatch as [`OciError::BlobDigest`].
    pub fn blob_bytes(&self, blob: &Blob) -> Result<Vec<u8>, OciError> {
        if blob.size > SMALL_LIMIT {
            return Err(OciError::Artifact {
                repository: self.repository.to_string(),
                tag: blob.digest.clone(),
                name: String::new(),
                reason: format!("a {}-byte blob where a small one was expected", blob.size),
            });
        }
        let mut reader = self.blob(blob)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|error| into_oci(error, || format!("reading {}", reader.url)))?;
        Ok(bytes)
    }

    /// Pushes `bytes` as a blob unless the repository has it already; returns it.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors.
    pub fn push_bytes(&self, bytes: &[u8]) -> Result<Blob, OciError> {
        let blob = Blob::of(bytes);
        if self.has_blob(&blob.digest)? {
            return Ok(blob);
        }
        let location = self.start_upload()?;
        let url = with_digest(&location, &blob.digest);
        let mut response = self.exchange(
            "PUT",
            &url,
            None,
            Payload::Bytes(bytes, "application/octet-stream"),
        )?;
        match response.status().as_u16() {
            201 | 204 => Ok(blob),
            _ => Err(status_error("PUT", &url, &mut response)),
        }
    }

    /// Pushes everything `reader` yields as one blob, streamed (never held in memory whole),
    /// and returns it: its digest is computed on the way, so the bytes are read once.
    ///
    /// # Errors
    ///
    /// Transport, status and authentication errors; `reader`'s own error.
    pub fn push_stream(&self, reader: &mut dyn Read) -> Result<Blob, OciError> {
        let location = self.start_upload()?;
        let mut hashing = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
            read: 0,
            transferred: &self.transferred,
        };
        let patched = self.exchange("PATCH", &location, None, Payload::Stream(&mut hashing));
        let mut response = patched?;
        if response.status().as_u16() != 202 {
            return Err(status_error("PATCH", &location, &mut response));
        }
        let next = self.location("PATCH", &response, &location)?;
        let blob = Blob {
            digest: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
            size: hashing.read,
        };
        let url = with_digest(&next, &blob.digest);
        let mut response = self.exchange("PUT", &url, None, Payload::Empty)?;
        match response.status().as_u16() {
            201 | 204 => Ok(blob),
            _ => Err(status_error("PUT", &url, &mut response)),
        }
    }

    /// Opens an upload session; returns its URL.
    fn start_upload(&self) -> Result<String, OciError> {
        let url = self.repository.url("blobs/uploads/");
        let mut response = self.exchange("POST", &url, None, Payload::Empty)?;
        if response.status().as_u16() != 202 {
            return Err(status_error("POST", &url, &mut response));
        }
        self.location("POST", &response, &url)
    }

    /// The absolute URL of a response's `Location` header.
    fn location(
        &self,
        method: &str,
        response: &Response<Body>,
        url: &str,
    ) -> Result<String, OciError> {
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| OciError::Status {
                method: method.to_owned(),
                url: url.to_owned(),
                status: response.status().as_u16(),
                message: ": no Location header for the upload".to_owned(),
            })?;
        if location.starts_with("http://") || location.starts_with("https://") {
            return Ok(location.to_owned());
        }
        let scheme = if self.repository.plain_http() {
            "http"
        } else {
            "https"
        };
        Ok(format!(
            "{scheme}://{}{location}",
            self.repository.registry()
        ))
    }

    /// Sends a request, answering an authentication challenge once if the registry asks
    /// (a streamed body cannot be sent twice: callers authenticate first, by the request
    /// that opens the upload).
    fn exchange(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        mut payload: Payload<'_>,
    ) -> Result<Response<Body>, OciError> {
        let mut answered = false;
        loop {
            let authorization = self.authorization.lock().map(|a| a.clone()).unwrap_or(None);
            let response =
                self.send(method, url, accept, &mut payload, authorization.as_deref())?;
            if response.status().as_u16() != 401 {
                return Ok(response);
            }
            if answered || matches!(payload, Payload::Stream(_)) {
                return Err(self.refused(401));
            }
            let header = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let authorization = self.answer(&header)?;
            if let Ok(mut slot) = self.authorization.lock() {
                *slot = Some(authorization);
            }
            answered = true;
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        payload: &mut Payload<'_>,
        authorization: Option<&str>,
    ) -> Result<Response<Body>, OciError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(accept) = accept {
            builder = builder.header("accept", accept);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        let transport = |reason: String| OciError::Transport {
            method: method.to_owned(),
            url: url.to_owned(),
            reason,
        };
        let result = match payload {
            Payload::Empty => builder.body(()).map(|request| self.agent.run(request)),
            Payload::Bytes(bytes, content_type) => builder
                .header("content-type", *content_type)
                .body(*bytes)
                .map(|request| self.agent.run(request)),
            Payload::Stream(reader) => builder
                .header("content-type", "application/octet-stream")
                .body(SendBody::from_reader(&mut **reader))
                .map(|request| self.agent.run(request)),
        };
        result
            .map_err(|error| transport(error.to_string()))?
            .map_err(|error| transport(error.to_string()))
    }

    /// The `Authorization` value that answers `header`, a `WWW-Authenticate` challenge.
    fn answer(&self, header: &str) -> Result<String, OciError> {
        let registry = self.repository.registry();
        let challenge_error = |reason: &str| OciError::Challenge {
            registry: registry.clone(),
            challenge: header.to_owned(),
            reason: reason.to_owned(),
        };
        let challenge = Challenge::parse(header).ok_or_else(|| challenge_error("unreadable"))?;
        match challenge.scheme.as_str() {
            "basic" => Ok(self.credentials()?.basic()),
            "bearer" => {
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or_else(|| challenge_error("no realm"))?;
                let host = realm
                    .strip_prefix("https://")
                    .or_else(|| realm.strip_prefix("http://"))
                    .and_then(|rest| rest.split(['/', '?']).next())
                    .ok_or_else(|| challenge_error("its realm is not an http(s) URL"))?;
                let host_only = host.rsplit_once(':').map_or(host, |(name, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        name
                    } else {
                        host
                    }
                });
                if realm.starts_with("http://")
                    && !is_loopback(host_only)
                    && !self.repository.plain_http()
                {
                    return Err(challenge_error(
                        "its token service is plain HTTP on another machine; kiln sends \
                         credentials over HTTPS only",
                    ));
                }
                let mut url = realm.clone();
                let mut separator = if url.contains('?') { '&' } else { '?' };
                for name in ["service", "scope"] {
                    if let Some(value) = challenge.params.get(name) {
                        url.push(separator);
                        url.push_str(name);
                        url.push('=');
                        url.push_str(&percent_encode(value));
                        separator = '&';
                    }
                }
                let mut payload = Payload::Empty;
                let basic = self.credentials.as_ref().map(Credentials::basic);
                let mut response = self.send("GET", &url, None, &mut payload, basic.as_deref())?;
                match response.status().as_u16() {
                    200 => {}
                    401 | 403 => return Err(self.refused(response.status().as_u16())),
                    _ => return Err(status_error("GET", &url, &mut response)),
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let bytes = read_small(&mut response, "GET", &url)?;
                let token: Token = serde_json::from_slice(&bytes)
                    .map_err(|error| challenge_error(&format!("its token answer: {error}")))?;
                let token = token
                    .token
                    .or(token.access_token)
                    .ok_or_else(|| challenge_error("its token answer holds no token"))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(challenge_error(
                "kiln answers Basic and Bearer challenges only",
            )),
        }
    }

    fn credentials(&self) -> Result<&Credentials, OciError> {
        self.credentials
            .as_ref()
            .ok_or_else(|| OciError::NoCredentials {
                registry: self.repository.registry(),
                searched: self.searched.clone(),
            })
    }

    fn refused(&self, status: u16) -> OciError {
        match &self.credentials {
            None => OciError::NoCredentials {
                registry: self.repository.registry(),
                searched: self.searched.clone(),
            },
            Some(credentials) => OciError::Refused {
                registry: self.repository.registry(),
                user: credentials.username.clone(),
                file: credentials.file.display().to_string(),
                status,
            },
        }
    }
}

/// A blob being read from the registry, checked against its digest and size at the end.
pub struct BlobReader {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    read: u64,
    expected: Blob,
    url: String,
    checked: bool,
    transferred: Arc<AtomicU64>,
}

impl Read for BlobReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.read += count as u64;
        self.transferred.fetch_add(count as u64, Ordering::Relaxed);
        if self.read > self.expected.size {
            return Err(self.mismatch(format!("more than {} bytes", self.expected.size)));
        }
        if count == 0 {
            if !self.checked {
                let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
                if actual != self.expected.digest || self.read != self.expected.size {
                    return Err(self.mismatch(format!("{actual} ({} bytes)", self.read)));
                }
                self.checked = true;
            }
            return Ok(0);
        }
        self.hasher.update(&buffer[..count]);
        Ok(count)
    }
}

impl BlobReader {
    fn mismatch(&self, actual: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            OciError::BlobDigest {
                url: self.url.clone(),
                expected: self.expected.digest.clone(),
                actual,
            },
        )
    }
}

/// Reads what a reader yields while hashing and counting it.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
    read: u64,
    transferred: &'a AtomicU64,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.read += count as u64;
        self.transferred.fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }
}

/// The [`OciError`] inside an I/O error from a [`BlobReader`], or the I/O error itself.
pub(crate) fn into_oci(error: io::Error, context: impl FnOnce() -> String) -> OciError {
    if !error.get_ref().is_some_and(|inner| inner.is::<OciError>()) {
        return OciError::io(context(), error);
    }
    let kind = error.kind();
    match error.into_inner().map(|inner| inner.downcast::<OciError>()) {
        Some(Ok(oci)) => *oci,
        Some(Err(other)) => OciError::io(context(), io::Error::new(kind, other)),
        None => OciError::io(context(), io::Error::from(kind)),
    }
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={}", percent_encode(digest))
}

fn read_small(response: &mut Response<Body>, method: &str, url: &str) -> Result<Vec<u8>, OciError> {
    response
        .body_mut()
        .with_config()
        .limit(SMALL_LIMIT)
        .read_to_vec()
        .map_err(|error| OciError::Transport {
            method: method.to_owned(),
            url: url.to_owned(),
            reason: error.to_string(),
        })
}

/// The error for an unexpected status, with the registry's own messages
/// (`{"errors": [{"code": ..., "message": ...}]}`) when it sent them.
fn status_error(method: &str, url: &str, response: &mut Response<Body>) -> OciError {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    let message = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => {
            let words: Vec<String> = errors
                .errors
                .iter()
                .map(|entry| {
                    format!("{} {}", entry.code, entry.message)
                        .trim()
                        .to_owned()
                })
                .collect();
            format!(": {}", words.join("; "))
        }
        _ => String::new(),
    };
    OciError::Status {
        method: method.to_owned(),
        url: url.to_owned(),
        status,
        message,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(
            with_digest("http://h/u?_state=x", "sha256:ab"),
            "http://h/u?_state=x&digest=sha256%3Aab"
        );
        assert_eq!(
            with_digest("http://h/u", "sha256:ab"),
            "http://h/u?digest=sha256%3Aab"
        );
    }

    #[test]
    fn a_blob_reader_checks_digest_and_size() {
        let blob = Blob::of(b"hello");
        let reader = |bytes: &'static [u8]| BlobReader {
            inner: Box::new(bytes),
            hasher: Sha256::new(),
            read: 0,
            expected: blob.clone(),
            url: "u".to_owned(),
            checked: false,
            transferred: Arc::default(),
        };
        let mut out = Vec::new();
        reader(b"hello")
            .read_to_end(&mut out)
            .expect("the right bytes");
        assert_eq!(out, b"hello");
        for wrong in [&b"hellO"[..], b"hell", b"hello!"] {
            let error = reader(wrong)
                .read_to_end(&mut Vec::new())
                .expect_err("wrong bytes");
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            let error = into_oci(error, || "reading".to_owned());
            assert!(matches!(error, OciError::BlobDigest { .. }), "{error}");
        }
    }
}
