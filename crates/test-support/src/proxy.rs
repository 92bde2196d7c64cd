//! A fault-injecting HTTP proxy for the S3 server of a test run, and its control client.
//!
//! `scripts/test.sh` runs `strongbox-fault-proxy` between the tests and s3s-fs. Requests
//! pass through untouched until a test sets a [`Plan`] for a token (its repository's
//! prefix); from then on each request whose target contains the token draws, from the
//! plan's seeded generator, whether it is failed and how (a bulk delete matches by the keys
//! in its body):
//!
//! - `500`, `503`: an S3 error response; the request never reaches the server.
//! - `reset`: an upload is cut mid-body with a TCP reset and never reaches the server; any
//!   other request (and a bulk delete, whose keys are in its body) is forwarded and its
//!   response cut mid-body with a reset.
//! - `slow`: no answer until the plan's `slow` time has passed (longer than the client's
//!   timeout), then the connection is closed; the request never reaches the server.
//! - `truncate`: a GET is answered `200` with the server's headers and half its body.
//!
//! A plan may also only delay matching requests (`delay`), to slow a command down without
//! failing it. Control requests use the path `/__faults/<token>` on the proxy's own port
//! (no bucket name starts with `_`): `PUT` sets a plan from its query, `GET` returns the
//! counts, `DELETE` removes the plan; `GET /__faults` returns the counts of the whole run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::Rng;

/// The ways a request can be failed.
pub const KINDS: [&str; 5] = ["500", "503", "reset", "slow", "truncate"];

/// What the proxy does to the requests of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Share of matching requests that are failed, 0 to 1.
    pub rate: f64,
    /// Which faults are drawn from ([`KINDS`]).
    pub kinds: Vec<String>,
    /// Only requests whose target also contains this text.
    pub only: String,
    /// Only requests of this method (`GET`, `PUT`, `DELETE`, …); empty for all.
    pub method: String,
    /// The generator's seed: the same requests in the same order draw the same faults.
    pub seed: u64,
    /// How long a `slow` fault keeps the client waiting.
    pub slow: Duration,
    /// A delay before every matching request that is not failed.
    pub delay: Duration,
}

impl Plan {
    /// Fail `rate` of the token's requests with any fault kind, seeded with `seed`.
    pub fn flaky(rate: f64, seed: u64) -> Self {
        Plan {
            rate,
            kinds: KINDS.iter().map(|k| k.to_string()).collect(),
            only: String::new(),
            method: String::new(),
            seed,
            slow: Duration::from_secs(5),
            delay: Duration::ZERO,
        }
    }

    /// Fail every request whose target contains `only`, with `kind`.
    pub fn permanent(kind: &str, only: &str) -> Self {
        Plan {
            kinds: vec![kind.to_string()],
            only: only.to_string(),
            ..Plan::flaky(1.0, 0)
        }
    }

    /// Fail nothing; delay each request whose target contains `only` by `delay`.
    pub fn slowed(only: &str, delay: Duration) -> Self {
        Plan {
            only: only.to_string(),
            delay,
            ..Plan::flaky(0.0, 0)
        }
    }

    /// Only requests of `method`.
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_string();
        self
    }

    fn query(&self) -> String {
        format!(
            "rate={}&kinds={}&only={}&method={}&seed={}&slow_ms={}&delay_ms={}",
            self.rate,
            self.kinds.join(","),
            self.only,
            self.method,
            self.seed,
            self.slow.as_millis(),
            self.delay.as_millis()
        )
    }

    fn parse(query: &str) -> Result<Self, String> {
        let mut plan = Plan::flaky(0.0, 0);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad {key}: {value}"))
            };
            match key {
                "rate" => plan.rate = value.parse().map_err(|_| format!("bad rate: {value}"))?,
                "kinds" => {
                    plan.kinds = value.split(',').map(str::to_string).collect();
                    if let Some(bad) = plan.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                        return Err(format!("unknown fault kind: {bad}"));
                    }
                }
                "only" => plan.only = value.to_string(),
                "method" => plan.method = value.to_string(),
                "seed" => plan.seed = number()?,
                "slow_ms" => plan.slow = Duration::from_millis(number()?),
                "delay_ms" => plan.delay = Duration::from_millis(number()?),
                _ => return Err(format!("unknown setting: {key}")),
            }
        }
        Ok(plan)
    }
}

/// What the proxy did to a token's requests (or to all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests that matched.
    pub requests: u64,
    /// Faults injected, by kind.
    pub injected: HashMap<String, u64>,
    /// Requests delayed and then served.
    pub delayed: u64,
}

impl Counts {
    /// Faults injected, of every kind.
    pub fn faults(&self) -> u64 {
        self.injected.values().sum()
    }

    fn text(&self) -> String {
        let mut text = format!("requests={} delayed={}", self.requests, self.delayed);
        for kind in KINDS {
            let n = self.injected.get(kind).copied().unwrap_or(0);
            text.push_str(&format!(" {kind}={n}"));
        }
        text
    }

    fn parse(text: &str) -> Self {
        let mut counts = Counts::default();
        for (key, value) in text.split_whitespace().filter_map(|p| p.split_once('=')) {
            let n = value.parse().unwrap_or(0);
            match key {
                "requests" => counts.requests = n,
                "delayed" => counts.delayed = n,
                kind => {
                    counts.injected.insert(kind.to_string(), n);
                }
            }
        }
        counts
    }

    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.delayed += other.delayed;
        for (kind, n) in &other.injected {
            *self.injected.entry(kind.clone()).or_default() += n;
        }
    }
}

/// The control client of a running proxy.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// `http://host:port` of the proxy: the S3 endpoint clients use to go through it.
    pub endpoint: String,
}

impl FaultProxy {
    /// The proxy of the run (`STRONGBOX_TEST_S3_PROXY`), or `None` (a failure under `CI=true`).
    pub fn get() -> Option<FaultProxy> {
        crate::service("STRONGBOX_TEST_S3_PROXY").map(|endpoint| FaultProxy { endpoint })
    }

    /// From now on, apply `plan` to requests whose target contains `token`.
    pub fn set(&self, token: &str, plan: &Plan) {
        self.control("PUT", &format!("/__faults/{token}?{}", plan.query()));
    }

    /// Let the token's requests pass again; the counts so far.
    pub fn clear(&self, token: &str) -> Counts {
        Counts::parse(&self.control("DELETE", &format!("/__faults/{token}")))
    }

    /// What was done to the token's requests since its first plan.
    pub fn counts(&self, token: &str) -> Counts {
        Counts::parse(&self.control("GET", &format!("/__faults/{token}")))
    }

    fn control(&self, method: &str, target: &str) -> String {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("fault proxy reachable");
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("control request sent");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("control response");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "fault proxy: {response}");
        body.to_string()
    }
}

/// A plan in force and what it did.
struct Rule {
    plan: Plan,
    rng: Rng,
    counts: Counts,
}

#[derive(Default)]
struct State {
    rules: HashMap<String, Rule>,
    finished: Counts,
}

/// Serve on `listener`, forwarding to `upstream` (`host:port`), until the process ends.
pub fn serve(listener: TcpListener, upstream: String) {
    let state = Arc::new(Mutex::new(State::default()));
    for client in listener.incoming().flatten() {
        let state = state.clone();
        let upstream = upstream.clone();
        thread::spawn(move || {
            // A failed connection only ends that connection; the client sees it and retries.
            let _ = Connection {
                client,
                upstream,
                state,
            }
            .run();
        });
    }
}

/// What a request draws.
enum Fault {
    None,
    Delay(Duration),
    Status(u16),
    /// Cut an upload of this many bytes halfway.
    CutUpload(usize),
    /// Forward, then cut the response halfway.
    CutResponse,
    Slow(Duration),
    Truncate,
}

struct Connection {
    client: TcpStream,
    upstream: String,
    state: Arc<Mutex<State>>,
}

/// A request as read from the client: its head as sent, and how long its body is.
struct Head {
    raw: Vec<u8>,
    method: String,
    target: String,
    body: Body,
}

enum Body {
    Length(usize),
    Chunked,
}

impl Connection {
    fn run(mut self) -> std::io::Result<()> {
        let mut reader = BufReader::new(self.client.try_clone()?);
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        if let Some(rest) = head.target.strip_prefix("/__faults") {
            read_body(&mut reader, &head.body)?;
            let (status, text) = self.control(&head.method, rest);
            respond(&mut self.client, status, "text/plain", &text)?;
            return self.client.shutdown(Shutdown::Both);
        }
        // A bulk delete names its keys in its body, not in its target.
        let mut read = None;
        if head.method == "POST" && head.target.contains("delete") {
            read = Some(read_body(&mut reader, &head.body)?);
        }
        let seen = read
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let fault = self.draw(&head, &seen);
        let mut body = |reader: &mut BufReader<TcpStream>| match read.take() {
            Some(body) => Ok(body),
            None => read_body(reader, &head.body),
        };
        match fault {
            Fault::Status(code) => {
                body(&mut reader)?;
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
                     <Message>injected by strongbox-fault-proxy</Message></Error>",
                    if code == 503 {
                        "SlowDown"
                    } else {
                        "InternalError"
                    }
                );
                respond(&mut self.client, code, "application/xml", &body)?;
            }
            Fault::Slow(wait) => {
                body(&mut reader)?;
                thread::sleep(wait);
                return self.client.shutdown(Shutdown::Both);
            }
            Fault::CutUpload(n) => {
                let mut half = vec![0; n / 2];
                reader.read_exact(&mut half)?;
                return reset(&self.client);
            }
            fault => {
                if let Fault::Delay(wait) = fault {
                    thread::sleep(wait);
                }
                let body = body(&mut reader)?;
                let response = forward(&self.upstream, &head.raw, &body)?;
                let split = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
                let cut = split + (response.len() - split) / 2;
                match fault {
                    Fault::CutResponse => {
                        self.client.write_all(&response[..cut])?;
                        return reset(&self.client);
                    }
                    Fault::Truncate => {
                        self.client.write_all(&response[..cut])?;
                        return self.client.shutdown(Shutdown::Both);
                    }
                    _ => self.client.write_all(&response)?,
                }
            }
        }
        // Every response says `Connection: close`: one request per connection.
        self.client.shutdown(Shutdown::Both)
    }

    /// What the request draws; `seen` is its body when it was read already.
    fn draw(&self, head: &Head, seen: &str) -> Fault {
        let mut state = self.state.lock().expect("proxy state");
        let has = |text: &str| head.target.contains(text) || seen.contains(text);
        let Some(rule) = state.rules.iter_mut().find_map(|(token, rule)| {
            (has(token)
                && has(&rule.plan.only)
                && (rule.plan.method.is_empty() || rule.plan.method == head.method))
                .then_some(rule)
        }) else {
            return Fault::None;
        };
        rule.counts.requests += 1;
        let roll = (rule.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let kinds = &rule.plan.kinds;
        if roll >= rule.plan.rate || kinds.is_empty() {
            if rule.plan.delay.is_zero() {
                return Fault::None;
            }
            rule.counts.delayed += 1;
            return Fault::Delay(rule.plan.delay);
        }
        let mut kind = kinds[rule.rng.below(kinds.len() as u64) as usize].as_str();
        // Only a GET has a body to truncate; the others are failed with a 500 instead.
        if kind == "truncate" && head.method != "GET" {
            kind = "500";
        }
        *rule.counts.injected.entry(kind.to_string()).or_default() += 1;
        match kind {
            "500" => Fault::Status(500),
            "503" => Fault::Status(503),
            "reset" => match head.body {
                Body::Length(n) if n > 0 && seen.is_empty() => Fault::CutUpload(n),
                _ => Fault::CutResponse,
            },
            "slow" => Fault::Slow(rule.plan.slow),
            _ => Fault::Truncate,
        }
    }

    fn control(&self, method: &str, rest: &str) -> (u16, String) {
        let mut state = self.state.lock().expect("proxy state");
        let (token, query) = rest
            .trim_start_matches('/')
            .split_once('?')
            .unwrap_or((rest.trim_start_matches('/'), ""));
        match (method, token) {
            ("GET", "") => {
                let mut total = state.finished.clone();
                for rule in state.rules.values() {
                    total.add(&rule.counts);
                }
                (200, total.text())
            }
            ("GET", token) => match state.rules.get(token) {
                Some(rule) => (200, rule.counts.text()),
                None => (404, format!("no plan for {token}")),
            },
            ("PUT", token) if !token.is_empty() => match Plan::parse(query) {
                Ok(plan) => {
                    let counts = state
                        .rules
                        .remove(token)
                        .map(|r| r.counts)
                        .unwrap_or_default();
                    let rng = Rng(plan.seed);
                    state
                        .rules
                        .insert(token.to_string(), Rule { plan, rng, counts });
                    (200, String::new())
                }
                Err(reason) => (400, reason),
            },
            ("DELETE", token) => match state.rules.remove(token) {
                Some(rule) => {
                    state.finished.add(&rule.counts);
                    (200, rule.counts.text())
                }
                None => (404, format!("no plan for {token}")),
            },
            _ => (400, format!("unknown control request: {method} {rest}")),
        }
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut body = Body::Length(0);
    loop {
        let start = raw.len();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&raw[start..])
            .trim_end()
            .to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("content-length:") {
            body = Body::Length(n.trim().parse().unwrap_or(0));
        } else if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            body = Body::Chunked;
        }
    }
    let first = String::from_utf8_lossy(&raw);
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    Ok(Some(Head {
        raw,
        method,
        target,
        body,
    }))
}

/// The body as sent (chunked framing kept).
fn read_body(reader: &mut impl BufRead, body: &Body) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match *body {
        Body::Length(n) => {
            raw.resize(n, 0);
            reader.read_exact(&mut raw)?;
        }
        Body::Chunked => loop {
            let start = raw.len();
            reader.read_until(b'\n', &mut raw)?;
            let line = String::from_utf8_lossy(&raw[start..]).trim().to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let start = raw.len();
                    reader.read_until(b'\n', &mut raw)?;
                    if raw[start..].trim_ascii().is_empty() {
                        return Ok(raw);
                    }
                }
            }
            let start = raw.len();
            raw.resize(start + size + 2, 0);
            reader.read_exact(&mut raw[start..])?;
        },
    }
    Ok(raw)
}

/// Send the request upstream on a connection of its own and return the whole response,
/// its `Connection` header replaced by `close`.
fn forward(upstream: &str, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&close(head))?;
    server.write_all(body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let split = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let mut out = close(&response[..split]);
    out.extend_from_slice(&response[split..]);
    Ok(out)
}

/// A head with its `Connection` header set to `close`.
fn close(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line == "\r\n" {
            out.push_str("Connection: close\r\n\r\n");
        } else if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn respond(client: &mut TcpStream, status: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Close with a TCP reset (linger 0) instead of an orderly end.
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO))?;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_survive_their_query_form() {
        let plans = [
            Plan::flaky(0.25, 7),
            Plan::permanent("503", "/data/").method("PUT"),
            Plan::slowed("/data/", Duration::from_millis(300)),
        ];
        for plan in plans {
            assert_eq!(Plan::parse(&plan.query()), Ok(plan.clone()));
        }
        assert_eq!(
            Plan::parse("kinds=boom"),
            Err("unknown fault kind: boom".into())
        );
        assert_eq!(
            Plan::parse("colour=red"),
            Err("unknown setting: colour".into())
        );
    }

    #[test]
    fn counts_survive_their_text_form() {
        let mut counts = Counts {
            requests: 9,
            delayed: 2,
            ..Counts::default()
        };
        for (i, kind) in KINDS.iter().enumerate() {
            counts.injected.insert(kind.to_string(), i as u64);
        }
        assert_eq!(Counts::parse(&counts.text()), counts);
        assert_eq!(counts.faults(), 10);
    }
}
