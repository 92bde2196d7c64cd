use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// Where a repository lives, parsed from `--repo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory: a plain path or `file:///path`.
    Local(PathBuf),
    /// An in-memory store, for tests (`memory://`).
    Memory,
    /// An S3 bucket and key prefix (`s3://bucket/prefix`); AWS_* variables configure it.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
    /// A Google Cloud Storage bucket (`gs://bucket/prefix`); GOOGLE_* variables configure it.
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
    /// An Azure Blob Storage container (`az://container/prefix`); AZURE_* variables configure it.
    Azure {
        /// Container name.
        container: String,
        /// Key prefix inside the container (may be empty).
        prefix: String,
    },
}

impl Location {
    /// Parse a repository URL or path.
    ///
    /// ```
    /// use strongbox_storage::Location;
    /// assert_eq!(Location::parse("/srv/backups")?, Location::Local("/srv/backups".into()));
    /// assert_eq!(Location::parse("file:///srv/backups")?, Location::Local("/srv/backups".into()));
    /// assert_eq!(Location::parse("memory://")?, Location::Memory);
    /// assert_eq!(
    ///     Location::parse("s3://backups/prod/media")?,
    ///     Location::S3 { bucket: "backups".into(), prefix: "prod/media".into() }
    /// );
    /// assert!(Location::parse("ftp://host/x").is_err());
    /// # Ok::<(), strongbox_storage::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidLocation {
            url: redact(url),
            reason: reason.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("empty location"));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "file:// URLs need an absolute path (file:///srv/backups)",
                ));
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(Location::Memory);
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                None => (rest, ""),
            };
            if bucket.contains('@') || bucket.contains(':') || rest.contains('?') {
                return Err(invalid(
                    "credentials and options do not belong in the URL; use the provider's environment variables",
                ));
            }
            if bucket.is_empty() {
                return Err(invalid("no bucket name"));
            }
            let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
            return match scheme {
                "s3" | "s3a" => Ok(Location::S3 { bucket, prefix }),
                "gs" => Ok(Location::Gcs { bucket, prefix }),
                "az" | "azure" => Ok(Location::Azure {
                    container: bucket,
                    prefix,
                }),
                _ => Err(invalid(&format!(
                    "unsupported scheme {scheme:?} (use a path, file://, s3://, gs://, az:// or memory://)"
                ))),
            };
        }
        Ok(Location::Local(PathBuf::from(url)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Memory => f.write_str("memory://"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Gcs { bucket, prefix } => write!(f, "gs://{bucket}/{prefix}"),
            Location::Azure { container, prefix } => write!(f, "az://{container}/{prefix}"),
        }
    }
}

/// Remove credentials (`user:password@`) and query strings from a URL for messages.
///
/// ```
/// use strongbox_storage::redact;
/// assert_eq!(redact("s3://AKIA:secret@bucket/p?token=x"), "s3://***@bucket/p");
/// assert_eq!(redact("/srv/backups"), "/srv/backups");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}
