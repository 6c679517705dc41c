//! One thread per libvirt connection: it connects, keeps the host's list
//! of domains current, and carries out what the window asks, each call
//! bounded by [`timeout::DEFAULT`]. A host that stops answering is
//! reported as lost (the window shows it; nothing else stops) and is
//! reconnected to after a pause, or at once when asked.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::{
    self, timeout, DomainInfo, DomainRow, DomainState, Engine, EngineError, EngineResult,
    ErrorKind, Power,
};

/// How often the domains' states are read.
const POLL: Duration = Duration::from_secs(2);
/// How long to wait before trying a lost host again.
const RECONNECT: Duration = Duration::from_secs(20);

pub type SharedEngine = Arc<dyn Engine>;

/// What the window asks of a connection.
pub enum Request {
    Refresh,
    Reconnect,
    Power(String, Power),
    /// The definition, with secure information (the VNC password).
    Xml(String),
    Define(String),
    Info(String),
}

/// What the connection reports; `usize` is the connection's number.
pub enum Event {
    Connecting(usize),
    Connected(usize, SharedEngine, String),
    /// Could not connect, or lost the connection.
    Failed(usize, EngineError),
    Domains(usize, Vec<DomainRow>),
    /// A power request finished, with the domain's state read right after
    /// it (`None` when it could not be read, or the domain is gone): the
    /// window's transitional state ("Forcing off…") ends with what the
    /// host says, not with itself.
    Done(usize, String, Power, EngineResult<()>, Option<DomainState>),
    Xml(usize, String, EngineResult<String>),
    Info(usize, String, EngineResult<DomainInfo>),
    Defined(EngineResult<String>),
    /// A copy between engines finished (from any thread).
    Copied(CopyOutcome),
}

/// What a Copy to… did.
pub struct CopyOutcome {
    pub name: String,
    /// Where to, as the sidebar names it.
    pub to: String,
    pub result: EngineResult<crate::connection::copy::CopyReport>,
}

/// Starts the thread for connection `id` to `uri`; it ends when the
/// window drops the returned sender.
pub fn spawn(id: usize, uri: String, events: async_channel::Sender<Event>) -> Sender<Request> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("libvirt-{id}"))
        .spawn(move || run(id, uri, rx, events));
    if let Err(e) = spawned {
        tracing::warn!("cannot start the thread for connection {id}: {e}");
    }
    tx
}

fn call<T: Send + 'static>(
    engine: &SharedEngine,
    what: &str,
    work: impl FnOnce(&dyn Engine) -> EngineResult<T> + Send + 'static,
) -> EngineResult<T> {
    let engine = engine.clone();
    timeout::call(timeout::DEFAULT, what, move || work(engine.as_ref()))
}

/// Whether an error means the connection itself is gone.
fn is_fatal(error: &EngineError) -> bool {
    matches!(
        error.kind,
        ErrorKind::ConnectionLost | ErrorKind::TimedOut | ErrorKind::Unreachable
    )
}

fn run(id: usize, uri: String, requests: Receiver<Request>, events: async_channel::Sender<Event>) {
    let send = |event: Event| events.send_blocking(event).is_ok();
    let mut engine: Option<SharedEngine> = None;
    let mut retry_at = Instant::now();
    loop {
        if engine.is_none() && Instant::now() >= retry_at {
            if !send(Event::Connecting(id)) {
                return;
            }
            let target = uri.clone();
            let opened = timeout::call(timeout::DEFAULT, "connecting", move || {
                let engine = connection::open(&target)?;
                let engine: SharedEngine = Arc::from(engine);
                let host = match connection::ConnectionUri::parse(&target) {
                    connection::ConnectionUri::Libvirt(parsed) => parsed.host.unwrap_or_default(),
                    connection::ConnectionUri::Local => String::new(),
                };
                Ok((engine, host))
            });
            match opened {
                Ok((opened, host)) => {
                    if !send(Event::Connected(id, opened.clone(), host)) {
                        return;
                    }
                    engine = Some(opened);
                }
                Err(e) => {
                    retry_at = Instant::now() + RECONNECT;
                    if !send(Event::Failed(id, e)) {
                        return;
                    }
                }
            }
        }
        if let Some(current) = &engine {
            match call(current, "listing the domains", |e| e.list()) {
                Ok(rows) => {
                    if !send(Event::Domains(id, rows)) {
                        return;
                    }
                }
                Err(e) => {
                    let lost = is_fatal(&e) || !current.is_alive();
                    if lost {
                        engine = None;
                        retry_at = Instant::now() + RECONNECT;
                    }
                    if !send(Event::Failed(id, e)) {
                        return;
                    }
                }
            }
        }
        let wait = match &engine {
            Some(_) => POLL,
            None => retry_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100)),
        };
        let request = match requests.recv_timeout(wait) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if let Request::Reconnect = request {
            engine = None;
            retry_at = Instant::now();
            continue;
        }
        let Some(current) = &engine else {
            continue;
        };
        let event = match request {
            Request::Refresh | Request::Reconnect => continue,
            Request::Power(name, verb) => {
                let target = name.clone();
                let result = call(current, "changing the domain's state", move |e| {
                    e.power(&target, verb)
                });
                let observed = call(current, "listing the domains", |e| e.list())
                    .ok()
                    .and_then(|rows| rows.into_iter().find(|r| r.name == name))
                    .map(|r| r.state);
                Event::Done(id, name, verb, result, observed)
            }
            Request::Xml(name) => {
                let target = name.clone();
                let result = call(current, "reading the definition", move |e| {
                    e.xml(&target, true)
                });
                Event::Xml(id, name, result)
            }
            Request::Define(xml) => {
                Event::Defined(call(current, "saving the definition", move |e| {
                    e.define(&xml)
                }))
            }
            Request::Info(name) => {
                let target = name.clone();
                Event::Info(
                    id,
                    name,
                    call(current, "reading the details", move |e| e.info(&target)),
                )
            }
        };
        if !send(event) {
            return;
        }
    }
}
