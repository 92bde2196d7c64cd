use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A secret value (a password): used as given, but shown, printed and serialized as `***`,
/// so `config check`, logs and debug output never carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(SecretVisitor)
    }
}

/// Takes a string; refuses anything else without quoting it, as serde's own messages do
/// (``invalid type: integer `123456` ``): an unquoted password is still the password.
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(&self, what: &'static str) -> Result<Secret, E> {
        Err(E::invalid_type(de::Unexpected::Other(what), self))
    }
}

impl de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quoted string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        self.refuse("boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        self.refuse("float")
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        self.refuse("bytes")
    }
}

/// Whether an `[s3]` setting holds a credential.
pub(crate) fn is_secret_s3_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "customer_key"]
        .iter()
        .any(|word| key.contains(word))
}

/// A URL with only its scheme and host shown: webhook URLs carry their token in the path
/// or the query (`https://hooks.slack.com/services/T0/B0/XXXX`).
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}/***", host(rest).1),
        None => "***".to_string(),
    }
}

/// What follows a URL's `scheme://`, split into its login (before `@`), its host, and the
/// rest (path, query, fragment).
fn host(rest: &str) -> (Option<&str>, &str, &str) {
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((login, host)) => (Some(login), host, tail),
        None => (None, authority, tail),
    }
}

/// A URL with the credentials before its host (`http://user:password@proxy:3128`, a proxy's
/// login) shown as `***`; any other value as it is.
pub(crate) fn redact_userinfo(value: &str) -> std::borrow::Cow<'_, str> {
    match value
        .split_once("://")
        .map(|(scheme, rest)| (scheme, host(rest)))
    {
        Some((scheme, (Some(_), host, tail))) => format!("{scheme}://***@{host}{tail}").into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let secret = Secret::new("hunter22");
        assert_eq!(secret.expose(), "hunter22");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        for (key, secret) in [
            ("secret_access_key", true),
            ("aws_session_token", true),
            ("token", true),
            ("sse_customer_key_base64", true),
            ("endpoint", false),
            ("access_key_id", false),
        ] {
            assert_eq!(is_secret_s3_key(key), secret, "{key}");
        }
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url("https://u:pw@h.example/x?token=1"),
            "https://h.example/***"
        );
        assert_eq!(redact_url("not a url"), "***");
        for (value, shown) in [
            ("http://puser:PROXYpass@proxy:3128", "http://***@proxy:3128"),
            ("http://u:p@h/x?y=z@w", "http://***@h/x?y=z@w"),
            ("http://proxy:3128/a@b", "http://proxy:3128/a@b"),
            ("us-east-1", "us-east-1"),
        ] {
            assert_eq!(redact_userinfo(value), shown, "{value}");
        }
    }
}
