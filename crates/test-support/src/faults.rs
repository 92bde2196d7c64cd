use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use strongbox_storage::{Intercept, Layered, Request, Store};

/// Which requests a [`Rule`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Writes,
    Deletes,
    Reads,
    Any,
}

/// Fail requests of a kind whose key contains a text, after letting some pass.
#[derive(Debug)]
pub struct Rule {
    kind: Kind,
    containing: String,
    after: usize,
    seen: AtomicUsize,
}

impl Rule {
    fn new(kind: Kind) -> Self {
        Rule {
            kind,
            containing: String::new(),
            after: 0,
            seen: AtomicUsize::new(0),
        }
    }

    /// Writes: PUTs, every request of a multipart upload, deletes, copies.
    pub fn writes() -> Self {
        Self::new(Kind::Writes)
    }

    /// Deletes only.
    pub fn deletes() -> Self {
        Self::new(Kind::Deletes)
    }

    /// GETs and HEADs.
    pub fn reads() -> Self {
        Self::new(Kind::Reads)
    }

    /// Every request.
    pub fn any() -> Self {
        Self::new(Kind::Any)
    }

    /// Only requests whose key contains `text`.
    pub fn containing(mut self, text: &str) -> Self {
        self.containing = text.to_string();
        self
    }

    /// Let the first `n` matching requests through, then fail every one after.
    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }

    fn matches(&self, request: &Request<'_>) -> bool {
        let kind = match self.kind {
            Kind::Any => true,
            Kind::Writes => request.is_write(),
            Kind::Deletes => matches!(request, Request::Delete { .. }),
            Kind::Reads => matches!(request, Request::Get { .. } | Request::GetRanges { .. }),
        };
        kind && request
            .path()
            .is_some_and(|p| p.as_ref().contains(&self.containing))
    }
}

/// Fails the requests its [`Rule`]s match, counts what it injected, and records every
/// request that reached it (what it was and the key), in order.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    injected: AtomicUsize,
    requests: Mutex<Vec<(String, String)>>,
}

impl Faults {
    /// No rules yet: every request passes.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Add a rule.
    pub fn add(&self, rule: Rule) {
        self.rules.lock().expect("rules").push(rule);
    }

    /// Remove every rule: the store heals.
    pub fn clear(&self) {
        self.rules.lock().expect("rules").clear();
    }

    /// How many requests were failed.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Every request that reached the wrapper: `(kind, key)`, kind as in
    /// [`Request`]'s variant names (`Put`, `UploadComplete`, `Delete`, …).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().expect("requests").clone()
    }

    /// The keys of objects that became visible through the wrapper: single PUTs and
    /// completed multipart uploads.
    pub fn stored_keys(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|(kind, _)| kind == "Put" || kind == "UploadComplete")
            .map(|(_, key)| key)
            .collect()
    }

    /// Wrap `store` so that every request passes through these faults.
    pub fn layer(self: &Arc<Self>, store: Store) -> Store {
        let hook = self.clone();
        store.layer(|inner| Arc::new(Layered::new(inner, hook)))
    }
}

impl Intercept for Faults {
    fn intercept(&self, request: &Request<'_>) -> object_store::Result<()> {
        let kind = request.kind().to_string();
        let key = request.path().map(|p| p.to_string()).unwrap_or_default();
        self.requests
            .lock()
            .expect("requests")
            .push((kind, key.clone()));
        for rule in self.rules.lock().expect("rules").iter() {
            if rule.matches(request) && rule.seen.fetch_add(1, Ordering::SeqCst) >= rule.after {
                self.injected.fetch_add(1, Ordering::SeqCst);
                return Err(object_store::Error::Generic {
                    store: "strongbox-test-support",
                    source: format!("injected fault on {key}").into(),
                });
            }
        }
        Ok(())
    }
}
