//! Connecting to the object store behind a [`Location`], and wrapping it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ClientConfigKey;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::retry::{Policy, Retrying};
use crate::{BackendError, Error, Location};

/// Settings of the store behind a location beyond what its URL says: the configuration
/// file's `[s3]` table. The environment (`AWS_*`) wins over them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// object_store S3 keys (`endpoint`, `region`, `allow_http`, `access_key_id`, …).
    pub s3: BTreeMap<String, String>,
}

/// Names the settings only: their values include credentials.
impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("s3", &self.s3.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoreOptions {
    /// Refuse keys the S3 backend does not know, and endpoints it could not send a request
    /// to, naming them.
    pub fn check(&self) -> Result<(), Error> {
        self.s3
            .iter()
            .try_for_each(|(name, value)| check_s3_value(name, s3_key(name)?, value))
    }
}

/// object_store takes an endpoint as given and panics building the first request when it is
/// not a URL; one with credentials would show them in every error.
fn check_s3_value(name: &str, key: AmazonS3ConfigKey, value: &str) -> Result<(), Error> {
    if !matches!(
        key,
        AmazonS3ConfigKey::Endpoint | AmazonS3ConfigKey::S3Endpoint
    ) {
        return Ok(());
    }
    let invalid = |reason: &str| Error::InvalidSetting {
        key: name.to_string(),
        reason: reason.to_string(),
    };
    let uri: http::Uri = format!("{value}/bucket/key")
        .parse()
        .map_err(|_| invalid("not a URL: give http://host:port or https://host"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(
            "not an http:// or https:// URL: give the scheme, as in http://host:port",
        ));
    }
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => Err(invalid(
            "the URL holds credentials: give them as access_key_id and secret_access_key \
             (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
        )),
        Some(a) if !a.host().is_empty() => Ok(()),
        _ => Err(invalid("the URL names no host")),
    }
}

fn s3_key(key: &str) -> Result<AmazonS3ConfigKey, Error> {
    let lower = key.to_ascii_lowercase();
    lower
        .parse()
        .or_else(|_| format!("aws_{lower}").parse())
        .map_err(|_| Error::InvalidSetting {
            key: key.to_string(),
            reason: "not an S3 setting object_store knows (endpoint, region, allow_http, \
                     access_key_id, secret_access_key, session_token, …)"
                .to_string(),
        })
}

/// An object store and what strongbox knows about it: where it is (for messages) and, for
/// a local directory, its path (where interrupted uploads leave staging files that the
/// store's listing does not show).
///
/// A remote store's pooled connections belong to the tokio runtime that opened them: hand
/// a repository a store that no other runtime has used, or its first requests wait out a
/// timeout (30 s by default) on a connection nobody drives.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) object_store: Arc<dyn ObjectStore>,
    pub(crate) location: String,
    pub(crate) local_root: Option<PathBuf>,
    /// The local store itself, unwrapped: small objects are written straight into their
    /// staging files. `None` once the store is wrapped, so that a wrapper sees every write.
    pub(crate) local_files: Option<Arc<LocalFileSystem>>,
}

impl Store {
    /// Connect to `location`; a local directory must exist.
    pub fn connect(location: &Location, options: &StoreOptions) -> Result<Self, Error> {
        connect(location, options, false)
    }

    /// Connect to `location`, creating a local directory first (for `init`).
    pub fn create(location: &Location, options: &StoreOptions) -> Result<Self, Error> {
        connect(location, options, true)
    }

    /// Any object_store backend; `location` names it in messages.
    pub fn from_object_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        Store {
            object_store: store,
            location: location.into(),
            local_root: None,
            local_files: None,
        }
    }

    /// Wrap the object store (in a [`Layered`](crate::Layered) store, say): every request
    /// of the repository, local writes included, then passes through the wrapper.
    pub fn layer(
        mut self,
        wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    ) -> Self {
        self.object_store = wrap(self.object_store);
        self.local_files = None;
        self
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.object_store
    }

    /// The location, for messages (never with credentials).
    pub fn location(&self) -> &str {
        &self.location
    }
}

fn connect(location: &Location, options: &StoreOptions, create_dir: bool) -> Result<Store, Error> {
    let shown = location.to_string();
    let cloud = |result: object_store::Result<Arc<dyn ObjectStore>>, prefix: &str| {
        let store = result.map_err(|e| Error::InvalidLocation {
            url: shown.clone(),
            reason: BackendError::new(e).to_string(),
        })?;
        let store: Arc<dyn ObjectStore> = Arc::new(Retrying::new(store, retry_policy()));
        Ok(Store::from_object_store(
            with_prefix(store, prefix),
            shown.clone(),
        ))
    };
    match location {
        Location::Local(dir) => {
            if create_dir {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    operation: "creating repository directory",
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            if !dir.is_dir() {
                return Err(Error::NotARepository {
                    location: dir.display().to_string(),
                    reason: if dir.exists() {
                        "not a directory".to_string()
                    } else {
                        "no such directory".to_string()
                    },
                });
            }
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| Error::InvalidLocation {
                    url: shown.clone(),
                    reason: BackendError::new(e).to_string(),
                })?
                .with_automatic_cleanup(true)
                .with_fsync(true);
            let store = Arc::new(store);
            Ok(Store {
                object_store: store.clone(),
                location: dir.display().to_string(),
                local_root: Some(dir.clone()),
                local_files: Some(store),
            })
        }
        Location::Memory => Ok(Store::from_object_store(Arc::new(InMemory::new()), shown)),
        Location::S3 { bucket, prefix } => {
            // Checks each `[s3]` key and endpoint, as `StoreOptions::check` does.
            let settings = s3_settings(options, std::env::vars())?;
            let built = s3_builder(&settings)
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build();
            if built.is_err() {
                if let Some(refused) = refused_setting(&settings, bucket) {
                    return Err(refused);
                }
            }
            check_plain_http(&settings)?;
            cloud(built.map(|s| Arc::new(s) as Arc<dyn ObjectStore>), prefix)
        }
        Location::Gcs { bucket, prefix } => cloud(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            prefix,
        ),
        Location::Azure { container, prefix } => cloud(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(retry_config())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            prefix,
        ),
    }
}

/// An S3 client configured with `settings`, later ones overriding earlier ones. Unless
/// they say otherwise (`unsigned_payload`), requests over TLS send `UNSIGNED-PAYLOAD` as the
/// AWS SDKs do: hashing every uploaded byte into the signature adds nothing TLS does not
/// guarantee, and costs a second SHA-256 pass over what strongbox already hashes (about
/// 0.4 s of CPU per GB). Over plain HTTP the signature still covers the payload.
fn s3_builder(settings: &[S3Setting]) -> AmazonS3Builder {
    let explicit = settings
        .iter()
        .any(|(_, key, _)| matches!(key, AmazonS3ConfigKey::UnsignedPayload));
    let mut builder = AmazonS3Builder::new();
    for (_, key, value) in settings {
        builder = builder.with_config(*key, value);
    }
    if explicit {
        return builder;
    }
    // The endpoint object_store uses: the S3 one over the general one. None is AWS itself,
    // over HTTPS.
    let tls = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
        .is_none_or(|endpoint| endpoint.starts_with("https://"));
    builder.with_unsigned_payload(tls)
}

/// An S3 setting: the name it was given (an `[s3]` key or an `AWS_*` variable), its key and
/// its value.
type S3Setting = (String, AmazonS3ConfigKey, String);

/// The `[s3]` settings, then the `AWS_*` variables of `env` over them (what from_env does).
fn s3_settings(
    options: &StoreOptions,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<S3Setting>, Error> {
    let mut settings = Vec::new();
    for (name, value) in &options.s3 {
        let key = s3_key(name)?;
        check_s3_value(name, key, value)?;
        settings.push((name.clone(), key, value.clone()));
    }
    for (name, value) in env {
        if let Some(key) = name
            .starts_with("AWS_")
            .then(|| name.to_ascii_lowercase().parse().ok())
            .flatten()
        {
            check_s3_value(&name, key, &value)?;
            settings.push((name, key, value));
        }
    }
    Ok(settings)
}

/// The first setting in effect (the last given for its key) that object_store refuses on
/// its own, such as `allow_http = "perhaps"`: its error names the value, not the setting.
/// Each is tried beside placeholder credentials, without which a key id alone fails too.
/// None when the client fails without any setting (no CA certificates on the machine):
/// the first setting tried was once blamed for that.
fn refused_setting(settings: &[S3Setting], bucket: &str) -> Option<Error> {
    let placeholder = || {
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id("placeholder")
            .with_secret_access_key("placeholder")
    };
    if placeholder().build().is_err() {
        return None;
    }
    let in_effect = |i: usize, key: &AmazonS3ConfigKey| {
        settings[i + 1..].iter().all(|(_, later, _)| later != key)
    };
    settings
        .iter()
        .enumerate()
        .find_map(|(i, (name, key, value))| {
            if !in_effect(i, key) {
                return None;
            }
            let alone = placeholder().with_config(*key, value.clone()).build();
            alone.err().map(|e| Error::InvalidSetting {
                key: name.clone(),
                reason: BackendError::new(e).to_string(),
            })
        })
}

/// object_store refuses an `http://` endpoint without `allow_http` only at the first request,
/// as "URL scheme is not allowed", which names no setting.
fn check_plain_http(settings: &[S3Setting]) -> Result<(), Error> {
    let last = |wanted: AmazonS3ConfigKey| settings.iter().rev().find(|(_, key, _)| *key == wanted);
    // object_store prefers the S3 endpoint to the general one, whichever came last.
    let Some((name, _, endpoint)) =
        last(AmazonS3ConfigKey::S3Endpoint).or_else(|| last(AmazonS3ConfigKey::Endpoint))
    else {
        return Ok(());
    };
    let allowed =
        last(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).is_some_and(|(_, _, value)| {
            // What object_store reads as true.
            ["1", "true", "on", "yes", "y"].contains(&value.to_ascii_lowercase().as_str())
        });
    if allowed
        || !endpoint
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Ok(());
    }
    Err(Error::InvalidSetting {
        key: name.clone(),
        reason: "a plain http:// endpoint needs allow_http = true in [s3] (or AWS_ALLOW_HTTP=true)"
            .to_string(),
    })
}

/// How many times a failed request is retried (`STRONGBOX_RETRIES`, default 5).
fn retries() -> u32 {
    std::env::var("STRONGBOX_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// What object_store's retry loop leaves alone (see [`Retrying`]): as many retries, and
/// none started later than a minute after the first attempt.
fn retry_policy() -> Policy {
    Policy {
        retries: retries(),
        backoff: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
    }
}

/// Retries with exponential backoff for transient errors (5xx, timeouts, resets); an
/// unreachable endpoint fails after a few seconds, not minutes.
fn retry_config() -> RetryConfig {
    let max_retries = retries() as usize;
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries,
        retry_timeout: Duration::from_secs(120),
    }
}

fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_object_store_cannot_send_to_are_refused_without_showing_them() {
        let cases = [
            ("http://127.0.0.1:9000", None),
            ("https://s3.example.net/", None),
            ("http://[::1]:9000", None),
            ("minio.internal:9000", Some("http://host:port")),
            ("localhost:9000", Some("http://host:port")),
            ("ftp://host", Some("not an http:// or https:// URL")),
            ("http://", Some("http://host:port")),
            ("http:///x", Some("")),
            ("http://[::1", Some("not a URL")),
            (" http://host", Some("not a URL")),
            ("http://host/a b", Some("not a URL")),
            ("http://user:hunter2@host:9000", Some("holds credentials")),
        ];
        for (endpoint, refused) in cases {
            let result = check_s3_value("endpoint", AmazonS3ConfigKey::Endpoint, endpoint);
            match (result, refused) {
                (Ok(()), None) => {}
                (Err(e), Some(reason)) => {
                    let text = e.to_string();
                    assert!(text.contains(reason), "{endpoint:?}: {text}");
                    assert!(
                        text.starts_with("invalid storage setting \"endpoint\""),
                        "{text}"
                    );
                    assert!(!text.contains("hunter2"), "{text}");
                }
                (result, _) => panic!("{endpoint:?}: {result:?}"),
            }
        }
        let proxy = AmazonS3ConfigKey::Client(object_store::ClientConfigKey::ProxyUrl);
        check_s3_value("proxy_url", proxy, "http://u:p@proxy:3128").unwrap();
    }

    #[test]
    fn debug_output_names_settings_without_their_values() {
        let options = StoreOptions {
            s3: [
                ("endpoint", "http://u:hunter2@h"),
                ("secret_access_key", "hunter3"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("secret_access_key"), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }

    #[test]
    fn payloads_are_signed_over_plain_http_only_unless_set() {
        use AmazonS3ConfigKey::{Endpoint, S3Endpoint, UnsignedPayload};
        let cases: [(&[(AmazonS3ConfigKey, &str)], &str); 8] = [
            (&[], "true"),
            (&[(Endpoint, "https://s3.example.net")], "true"),
            (&[(Endpoint, "http://127.0.0.1:9000")], "false"),
            (&[(S3Endpoint, "http://127.0.0.1:9000")], "false"),
            (
                &[
                    (Endpoint, "http://127.0.0.1:9000"),
                    (UnsignedPayload, "true"),
                ],
                "true",
            ),
            (
                &[
                    (UnsignedPayload, "false"),
                    (Endpoint, "https://s3.example.net"),
                ],
                "false",
            ),
            // A later setting overrides an earlier one.
            (
                &[
                    (Endpoint, "http://127.0.0.1:9000"),
                    (Endpoint, "https://s3.example.net"),
                ],
                "true",
            ),
            // The S3 endpoint is the one used.
            (
                &[
                    (S3Endpoint, "https://s3.example.net"),
                    (Endpoint, "http://127.0.0.1:9000"),
                ],
                "true",
            ),
        ];
        for (settings, unsigned) in cases {
            let settings: Vec<S3Setting> = settings
                .iter()
                .map(|(key, value)| (key.as_ref().to_string(), *key, value.to_string()))
                .collect();
            let builder = s3_builder(&settings);
            assert_eq!(
                builder.get_config_value(&UnsignedPayload).as_deref(),
                Some(unsigned),
                "{settings:?}"
            );
        }
    }

    #[test]
    fn s3_settings_are_checked_by_name() {
        let cases = [
            ("endpoint", true),
            ("ENDPOINT_URL", true),
            ("region", true),
            ("allow_http", true),
            ("ALLOW_HTTP", true),
            ("secret_access_key", true),
            ("aws_session_token", true),
            ("endpoitn", false),
            ("", false),
        ];
        for (key, ok) in cases {
            // An endpoint's value is checked too (see the test below).
            let value = match key.to_ascii_lowercase().starts_with("endpoint") {
                true => "http://x",
                false => "x",
            };
            let options = StoreOptions {
                s3: [(key.to_string(), value.to_string())].into(),
            };
            let result = options.check();
            assert_eq!(result.is_ok(), ok, "{key}");
            if let Err(e) = result {
                assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
            }
        }
    }

    #[test]
    fn an_s3_setting_object_store_cannot_parse_is_named_as_given() {
        // What CI's environment holds, beside the bad value.
        let ci = [
            ("AWS_ACCESS_KEY_ID", "strongbox-test"),
            ("AWS_SECRET_ACCESS_KEY", "strongbox-test-secret"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "us-east-1"),
        ];
        /// `[s3]` settings, `AWS_*` variables, and the setting named with its value (`None`:
        /// the client builds).
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            Option<(&'a str, &'a str)>,
        );
        let cases: [Case<'_>; 7] = [
            (
                &[("allow_http", "perhaps")],
                &[],
                Some(("allow_http", "perhaps")),
            ),
            (
                &[("unsigned_payload", "maybe")],
                &[],
                Some(("unsigned_payload", "maybe")),
            ),
            (
                &[("virtual_hosted_style_request", "often")],
                &[],
                Some(("virtual_hosted_style_request", "often")),
            ),
            (
                &[("skip_signature", "sometimes")],
                &[],
                Some(("skip_signature", "sometimes")),
            ),
            (
                &[],
                &[("AWS_ALLOW_HTTP", "perhaps")],
                Some(("AWS_ALLOW_HTTP", "perhaps")),
            ),
            (
                &[("allow_http", "true")],
                &[("AWS_ALLOW_HTTP", "perhaps")],
                Some(("AWS_ALLOW_HTTP", "perhaps")),
            ),
            // The variable overrides the file's bad value, which is then not in effect.
            (
                &[("allow_http", "perhaps")],
                &[("AWS_ALLOW_HTTP", "true")],
                None,
            ),
        ];
        for (file, env, named) in cases {
            let options = StoreOptions {
                s3: file
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            let vars = ci
                .iter()
                .chain(env)
                .map(|(k, v)| (k.to_string(), v.to_string()));
            let settings = s3_settings(&options, vars).unwrap();
            let built = s3_builder(&settings).with_bucket_name("bucket").build();
            assert_eq!(built.is_ok(), named.is_none(), "{file:?} {env:?}");
            match (named, refused_setting(&settings, "bucket")) {
                (None, None) => {}
                (Some((name, value)), Some(err @ Error::InvalidSetting { .. })) => {
                    let shown = err.to_string();
                    assert!(
                        shown.contains(&format!("{name:?}"))
                            && shown.contains(&format!("{value:?}")),
                        "{file:?} {env:?}: {shown}"
                    );
                }
                (named, refused) => panic!("{file:?} {env:?}: expected {named:?}, got {refused:?}"),
            }
        }
    }

    #[test]
    fn a_plain_http_endpoint_without_allow_http_is_refused_naming_it() {
        use AmazonS3ConfigKey::{Endpoint, Region, S3Endpoint};
        let allow = AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp);
        /// Settings in order, and the setting named in the error (`None`: accepted).
        type Case<'a> = (&'a [(AmazonS3ConfigKey, &'a str)], Option<&'a str>);
        let cases: [Case<'_>; 10] = [
            (&[], None),
            (&[(Region, "eu-west-1")], None),
            (&[(Endpoint, "https://s3.example.net")], None),
            (&[(Endpoint, "http://127.0.0.1:9000")], Some("aws_endpoint")),
            (
                &[(Endpoint, "HTTP://127.0.0.1:9000"), (allow, "false")],
                Some("aws_endpoint"),
            ),
            (
                &[(Endpoint, "http://127.0.0.1:9000"), (allow, "true")],
                None,
            ),
            (&[(allow, "Yes"), (Endpoint, "http://127.0.0.1:9000")], None),
            // A later value overrides an earlier one.
            (
                &[
                    (allow, "1"),
                    (Endpoint, "http://127.0.0.1:9000"),
                    (allow, "0"),
                ],
                Some("aws_endpoint"),
            ),
            // The S3 endpoint wins over the general one, given before or after it.
            (
                &[
                    (S3Endpoint, "https://s3.example.net"),
                    (Endpoint, "http://127.0.0.1:9000"),
                ],
                None,
            ),
            (
                &[
                    (Endpoint, "https://s3.example.net"),
                    (S3Endpoint, "http://127.0.0.1:9000"),
                ],
                Some("aws_endpoint_url_s3"),
            ),
        ];
        for (settings, named) in cases {
            let settings: Vec<S3Setting> = settings
                .iter()
                .map(|(key, value)| (key.as_ref().to_string(), *key, value.to_string()))
                .collect();
            match (check_plain_http(&settings), named) {
                (Ok(()), None) => {}
                (Err(e), Some(name)) => {
                    let shown = e.to_string();
                    assert!(shown.contains(&format!("{name:?}")), "{shown}");
                    assert!(shown.contains("allow_http = true"), "{shown}");
                }
                (result, named) => panic!("{settings:?}: expected {named:?}, got {result:?}"),
            }
        }
    }

    #[test]
    fn a_key_id_without_its_secret_is_not_blamed_on_one_setting() {
        // A key id without its secret: no setting is refused alone, so the caller reports
        // object_store's own error (an invalid location) instead of blaming one.
        let options = StoreOptions {
            s3: [("access_key_id".to_string(), "AKIDEXAMPLE".to_string())].into(),
        };
        let settings = s3_settings(&options, []).unwrap();
        let built = s3_builder(&settings).with_bucket_name("bucket").build();
        assert!(built.is_err());
        assert!(refused_setting(&settings, "bucket").is_none());
    }
}
