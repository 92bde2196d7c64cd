//! Encryption at rest with age. A repository has its own age identity; its recipient is in
//! the marker, so writers seal every object to it without any secret. Readers unlock the
//! identity from one of the key files `keys/<id>.age`, each the repository identity
//! age-encrypted to one user recipient or passphrase. Adding or removing a reader writes or
//! deletes one key file and never touches the data.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;

use crate::behind::StoreBehind;
use crate::payload::{ChunkLayout, OpeningReader, SealingWriter};
use crate::pipeline::{Envelope, Sealed};
use crate::raw::RawWriter;
use crate::Error;

/// The marker's `encryption` value of an age repository.
pub const AGE: &str = "age";

/// The stanza type under which a recipient key file names its holder, so that `key list`
/// can show who it is for. age implementations skip stanzas they do not know.
const HOLDER_TAG: &str = "strongbox-recipient";

/// scrypt work factor of passphrase key files; age's default (2^18) costs about a second
/// per unlock, which is what it is for.
const SCRYPT_LOG_N: u8 = 18;

/// What unlocks an encrypted repository for reading. Its `Debug` never shows the secret.
#[derive(Clone)]
pub enum Unlock {
    /// The text of an age identity file (`AGE-SECRET-KEY-1…` lines).
    Identity(SecretString),
    /// A passphrase that a key file was made with.
    Passphrase(SecretString),
}

impl Unlock {
    /// The text of an identity file, checked: each line that is not blank or a comment is
    /// an age identity (a refused line is named by its number, never shown).
    pub fn identity(text: SecretString) -> Result<Unlock, Error> {
        parse_identities(&text)?;
        Ok(Unlock::Identity(text))
    }
}

impl fmt::Debug for Unlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unlock::Identity(_) => f.write_str("Unlock::Identity(<redacted>)"),
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase(<redacted>)"),
        }
    }
}

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The id in `keys/<id>.age`.
    pub id: String,
    /// `recipient`, `passphrase`, or `damaged` for a file whose age header does not parse
    /// (it opens for nobody; `key remove` takes it away).
    pub kind: &'static str,
    /// The holder's age recipient, for a recipient key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// When the key file was written.
    pub created: chrono::DateTime<chrono::Utc>,
}

impl KeyInfo {
    /// The kind of a key file whose header does not parse.
    pub const DAMAGED: &'static str = "damaged";
}

/// Whether a key file is sealed with a passphrase (else to a recipient).
pub(crate) fn is_passphrase_file(key: &str, bytes: &[u8]) -> Result<bool, Error> {
    key_file_header(key, bytes).map(|d| d.is_scrypt())
}

/// A key file's age header, parsed; a file that is not age is corrupt.
pub(crate) fn key_file_header<'a>(
    key: &str,
    bytes: &'a [u8],
) -> Result<age::Decryptor<&'a [u8]>, Error> {
    // age's message for an unknown format goes on to a second line ("Have you tried
    // upgrading…"), which would break the one-line warning and error.
    age::Decryptor::new_buffered(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: format!(
            "not an age file: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    })
}

/// The recipient a key file names in its header, if it names one (see [`Holder`]).
pub(crate) fn key_file_recipient(bytes: &[u8]) -> Option<String> {
    let prefix = format!("-> {HOLDER_TAG} ");
    bytes
        .split(|b| *b == b'\n')
        .take_while(|line| !line.starts_with(b"---"))
        .filter_map(|line| {
            std::str::from_utf8(line)
                .ok()?
                .strip_prefix(prefix.as_str())
        })
        .find_map(|r| parse_recipient(r).ok())
        .map(|r| r.to_string())
}

/// Names a key file's holder in its header: a stanza that wraps no key, public like the
/// recipient itself.
struct Holder(String);

impl age::Recipient for Holder {
    fn wrap_file_key(
        &self,
        _: &age_core::format::FileKey,
    ) -> Result<(Vec<age_core::format::Stanza>, HashSet<String>), age::EncryptError> {
        let stanza = age_core::format::Stanza {
            tag: HOLDER_TAG.to_string(),
            args: vec![self.0.clone()],
            body: Vec::new(),
        };
        Ok((vec![stanza], HashSet::new()))
    }
}

/// An encryptor to the given recipients.
fn encryptor(recipients: &[&dyn age::Recipient]) -> age::Encryptor {
    age::Encryptor::with_recipients(recipients.iter().copied()).expect("compatible recipients")
}

/// Who may read a new key file: an age recipient (`age1…`) or a passphrase.
#[derive(Clone)]
pub enum KeyHolder {
    /// An age X25519 recipient.
    Recipient(String),
    /// A passphrase (scrypt).
    Passphrase(SecretString),
}

impl fmt::Debug for KeyHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyHolder::Recipient(r) => f.debug_tuple("Recipient").field(r).finish(),
            KeyHolder::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

impl KeyHolder {
    /// `recipient` or `passphrase`, as `key list` shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyHolder::Recipient(_) => "recipient",
            KeyHolder::Passphrase(_) => "passphrase",
        }
    }

    /// The recipients of an age recipients file (`age -R`): one a line, blank lines and
    /// `#` comments skipped. A line that is no recipient is refused by its number.
    pub fn from_recipients_file(text: &str) -> Result<Vec<KeyHolder>, Error> {
        key_lines(text)
            .map(|(number, line)| {
                x25519::Recipient::from_str(line)
                    .map(|_| KeyHolder::Recipient(line.to_string()))
                    .map_err(|reason| invalid_recipient(&format!("line {number}, "), line, reason))
            })
            .collect()
    }

    /// Check that a recipient parses, naming it when it does not.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            KeyHolder::Recipient(r) => parse_recipient(r).map(drop),
            KeyHolder::Passphrase(p) if p.expose_secret().is_empty() => Err(Error::InvalidKey {
                what: "the passphrase".to_string(),
                reason: "it is empty".to_string(),
            }),
            KeyHolder::Passphrase(_) => Ok(()),
        }
    }

    /// The repository identity, sealed so that this holder can open it.
    pub(crate) fn seal(&self, identity: &x25519::Identity) -> Result<Vec<u8>, Error> {
        let encryptor = match self {
            KeyHolder::Recipient(r) => {
                let recipient = parse_recipient(r)?;
                encryptor(&[&recipient, &Holder(recipient.to_string())])
            }
            KeyHolder::Passphrase(p) => {
                let mut recipient = age::scrypt::Recipient::new(p.clone());
                recipient.set_work_factor(SCRYPT_LOG_N);
                encryptor(&[&recipient])
            }
        };
        let mut out = Vec::new();
        let mut writer = encryptor.wrap_output(&mut out).expect("writing to memory");
        io::Write::write_all(&mut writer, identity.to_string().expose_secret().as_bytes())
            .and_then(|()| io::Write::write_all(&mut writer, b"\n"))
            .and_then(|()| writer.finish().map(drop))
            .expect("writing to memory");
        Ok(out)
    }
}

pub(crate) fn parse_recipient(text: &str) -> Result<x25519::Recipient, Error> {
    let text = text.trim();
    x25519::Recipient::from_str(text).map_err(|reason| invalid_recipient("", text, reason))
}

/// The lines of an age recipients or identity file that hold a key, trimmed, with their
/// numbers (from 1): blank lines and `#` comments are skipped, as age skips them.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Why `text` (at `place`, which opens the message) is no recipient, quoting it only when
/// it is public. An identity given where its recipient belongs (an `age-keygen` file as
/// `--recipients-file`) is a secret, and anything else may be one mistyped.
fn invalid_recipient(place: &str, text: &str, reason: &str) -> Error {
    let prefix = |p: &str| {
        text.get(..p.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(p))
    };
    if prefix("AGE-SECRET-KEY-") {
        Error::InvalidKey {
            what: format!("{place}a recipient"),
            reason: "it is an age identity (a secret key), not a recipient: give the \
                     recipient `age-keygen -y` prints for it"
                .to_string(),
        }
    } else if prefix("age1") {
        Error::InvalidKey {
            what: format!("{place}recipient {text:?}"),
            reason: format!("not an age X25519 recipient (age1…): {reason}"),
        }
    } else {
        Error::InvalidKey {
            what: format!("{place}a recipient of {} characters", text.chars().count()),
            reason: "not an age X25519 recipient (age1…)".to_string(),
        }
    }
}

/// The identities an [`Unlock`] can try on a key file, and whether it is a passphrase.
pub(crate) fn identities(unlock: &Unlock) -> Result<Vec<Box<dyn age::Identity>>, Error> {
    match unlock {
        Unlock::Passphrase(p) => Ok(vec![Box::new(age::scrypt::Identity::new(p.clone()))]),
        Unlock::Identity(text) => Ok(parse_identities(text)?
            .into_iter()
            .map(|i| Box::new(i) as Box<dyn age::Identity>)
            .collect()),
    }
}

/// The X25519 identities of an identity file's text, refusing a line that is not one by
/// its number, never its text: it may be a secret. This build has no plugins.
fn parse_identities(text: &SecretString) -> Result<Vec<x25519::Identity>, Error> {
    let refused = |what: String, reason: &str| Error::InvalidKey {
        what,
        reason: reason.to_string(),
    };
    let found: Vec<x25519::Identity> = key_lines(text.expose_secret())
        .map(|(number, line)| {
            x25519::Identity::from_str(line).map_err(|_| {
                let recipient = line
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("age1"));
                refused(
                    format!("line {number}"),
                    if recipient {
                        "it is an age recipient (a public key), not an identity: give the file \
                         age-keygen wrote (AGE-SECRET-KEY-1…)"
                    } else {
                        "not an age identity (AGE-SECRET-KEY-1…)"
                    },
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        return Err(refused(
            "the identity file".to_string(),
            "it holds no age identity (AGE-SECRET-KEY-1…)",
        ));
    }
    Ok(found)
}

/// Open key file `key`, its header parsed ([`key_file_header`]), with the given
/// identities: the repository identity, `Ok(None)` when none of them is a holder of it.
pub(crate) fn open_key_file(
    key: &str,
    decryptor: age::Decryptor<&[u8]>,
    identities: &[Box<dyn age::Identity>],
    passphrase: bool,
) -> Result<Option<x25519::Identity>, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        key: key.to_string(),
        reason,
    };
    if decryptor.is_scrypt() != passphrase {
        return Ok(None);
    }
    let mut reader = match decryptor.decrypt(identities.iter().map(|i| i.as_ref())) {
        Ok(reader) => reader,
        Err(age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed) => {
            return Ok(None)
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| corrupt(format!("unreadable: {e}")))?;
    let identity = x25519::Identity::from_str(text.trim())
        .map_err(|_| corrupt("does not hold an age identity".to_string()))?;
    Ok(Some(identity))
}

/// A fresh repository identity.
pub(crate) fn generate() -> x25519::Identity {
    x25519::Identity::generate()
}

/// The age envelope: seals to the repository recipient; opens only once unlocked.
pub(crate) struct Age {
    recipient: x25519::Recipient,
    identity: Option<x25519::Identity>,
    location: String,
}

impl fmt::Debug for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Age")
            .field("recipient", &self.recipient.to_string())
            .field("unlocked", &self.identity.is_some())
            .finish()
    }
}

impl Age {
    pub(crate) fn new(
        recipient: x25519::Recipient,
        identity: Option<x25519::Identity>,
        location: &str,
    ) -> Self {
        Age {
            recipient,
            identity,
            location: location.to_string(),
        }
    }

    /// The unlocked identity, which reading needs.
    fn identity(&self) -> io::Result<&x25519::Identity> {
        self.identity.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                Error::KeyRequired {
                    location: self.location.clone(),
                },
            )
        })
    }
}

impl Envelope for Age {
    fn seal(&self, stored: RawWriter) -> io::Result<Box<dyn Sealed>> {
        let stored = StoreBehind::new(stored);
        Ok(Box::new(SealingWriter::new(&self.recipient, stored)?))
    }

    fn open(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(OpeningReader::new(self.identity()?, stored)?))
    }

    fn chunks(&self, head: &[u8], stored_len: u64) -> io::Result<Option<ChunkLayout>> {
        ChunkLayout::new(self.identity()?, head, stored_len)
    }

    /// Every 64 KiB chunk's tag is checked before a byte of it is handed on.
    fn authenticates(&self) -> bool {
        true
    }

    fn repository_identity(&self) -> Option<&x25519::Identity> {
        self.identity.as_ref()
    }
}

impl Sealed for SealingWriter<StoreBehind<RawWriter>> {
    fn finish(self: Box<Self>) -> io::Result<RawWriter> {
        SealingWriter::finish(*self)?.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: age's message for an unknown format has a second line, which broke the
    /// damaged key file's one-line warning.
    #[test]
    fn a_key_file_that_is_not_age_is_refused_in_one_line() {
        for bytes in [
            &b"not an age file at all\n"[..],
            b"age-encryption.org/v9\n-> X\n",
        ] {
            let e = key_file_header("keys/k.age", bytes)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("keys/k.age") && !e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn identity_files_parse_or_are_refused_without_echoing_a_line() {
        let key = generate().to_string().expose_secret().to_string();
        let public = generate().to_public().to_string();
        let cases: [(String, Result<usize, &str>); 6] = [
            (format!("{key}\n"), Ok(1)),
            (format!("# created: today\n\n{key}\n{key}\n"), Ok(2)),
            (
                "# only a comment\n".to_string(),
                Err("holds no age identity"),
            ),
            (String::new(), Err("holds no age identity")),
            (
                format!("{key}\nnot-a-key-line\n"),
                Err("line 2: not an age identity"),
            ),
            (
                format!("# public key: {public}\n{public}\n"),
                Err("line 2: it is an age recipient (a public key), not an identity"),
            ),
        ];
        for (text, expected) in cases {
            let result = Unlock::identity(SecretString::from(text.clone()))
                .and_then(|unlock| identities(&unlock));
            match (result, expected) {
                (Ok(found), Ok(n)) => assert_eq!(found.len(), n, "{text:?}"),
                (Err(e), Err(message)) => {
                    let shown = e.to_string();
                    assert!(shown.contains(message), "{shown}");
                    assert!(!shown.contains("not-a-key-line"), "{shown}");
                }
                (other, expected) => {
                    panic!("{text:?}: {:?} vs {expected:?}", other.map(|v| v.len()))
                }
            }
        }
    }

    #[test]
    fn recipients_files_parse_or_are_refused_by_line_without_echoing_a_secret() {
        let identity = generate();
        let secret = identity.to_string().expose_secret().to_string();
        let recipient = identity.to_public().to_string();
        let other = generate().to_public().to_string();
        let cases: [(String, Result<usize, &[&str]>); 6] = [
            (format!("# team\n\n{recipient}\n  {other}  \n"), Ok(2)),
            ("# nobody yet\n".to_string(), Ok(0)),
            (
                format!("# created: today\n{secret}\n"),
                Err(&["line 2, a recipient", "an age identity (a secret key)"]),
            ),
            (
                format!("{recipient}\n{}\n", secret.to_lowercase()),
                Err(&["line 2, a recipient", "an age identity"]),
            ),
            (
                "hunter2-not-a-key\n".to_string(),
                Err(&["line 1, a recipient of 17 characters"]),
            ),
            (
                "age1bogus\n".to_string(),
                Err(&["line 1, recipient \"age1bogus\"", "not an age X25519"]),
            ),
        ];
        for (text, expected) in cases {
            match (KeyHolder::from_recipients_file(&text), expected) {
                (Ok(holders), Ok(n)) => {
                    assert_eq!(holders.len(), n, "{text:?}");
                    assert!(holders.iter().all(|h| h.check().is_ok()), "{text:?}");
                }
                (Err(e), Err(messages)) => {
                    let shown = e.to_string();
                    for message in messages {
                        assert!(shown.contains(message), "{shown}");
                    }
                    for secret in [secret.as_str(), &secret.to_lowercase(), "hunter2"] {
                        assert!(!shown.contains(secret), "{shown}");
                    }
                }
                (other, expected) => {
                    panic!("{text:?}: {:?} vs {expected:?}", other.map(|v| v.len()))
                }
            }
        }
    }

    #[test]
    fn a_key_file_opens_for_its_holder_only() {
        let repo = generate();
        let mine = generate();
        let other = generate();
        let holder = KeyHolder::Recipient(mine.to_public().to_string());
        let sealed = holder.seal(&repo).unwrap();
        let opens = |who: &x25519::Identity| {
            let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(who.clone())];
            let header = key_file_header("keys/k.age", &sealed).unwrap();
            open_key_file("keys/k.age", header, &ids, false).unwrap()
        };
        let opened = opens(&mine).expect("the holder opens it");
        assert_eq!(opened.to_public().to_string(), repo.to_public().to_string());
        assert!(opens(&other).is_none());
        let Err(err) = key_file_header("keys/k.age", b"garbage") else {
            panic!("garbage read as a key file");
        };
        assert!(err.to_string().contains("keys/k.age"), "{err}");
    }

    #[test]
    fn a_recipient_key_file_names_its_holder_and_others_do_not() {
        let repo = generate();
        let mine = generate().to_public().to_string();
        let passphrase = KeyHolder::Passphrase(SecretString::from("pw".to_string()));
        let valid = generate().to_public().to_string();
        let header = |stanza: &str| format!("age-encryption.org/v1\n{stanza}\n--- mac\n");
        let cases: [(Vec<u8>, Option<&str>); 5] = [
            (
                KeyHolder::Recipient(mine.clone()).seal(&repo).unwrap(),
                Some(&mine),
            ),
            (passphrase.seal(&repo).unwrap(), None),
            (
                header(&format!("-> {HOLDER_TAG} {valid}\n")).into_bytes(),
                Some(&valid),
            ),
            (
                header(&format!("-> {HOLDER_TAG} age1bogus\n")).into_bytes(),
                None,
            ),
            (
                format!("age-encryption.org/v1\n--- mac\n-> {HOLDER_TAG} {valid}\n").into_bytes(),
                None,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                key_file_recipient(&bytes).as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            );
        }
    }
}
