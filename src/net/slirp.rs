//! User-mode NAT on libslirp 4.x (`libslirp.h`; Debian `libslirp-dev`).
//!
//! One thread per NIC owns the `Slirp` instance (libslirp is not
//! thread-safe): it polls libslirp's host sockets plus an eventfd that says
//! the guest sent frames, feeds those frames to `slirp_input`, and hands
//! what libslirp emits to the NIC's [`FrameSink`].
//!
//! Guest-side layout is libvirt's default network unless configured
//! otherwise (see [`UserNetConfig`]); datagrams and connections to the
//! gateway address reach the host's loopback, as QEMU's `-netdev user`
//! does. IPv6 is off (libslirp would need router-advertisement timers and
//! the guest tests do not use it yet). Not used: guestfwd, `restricted`
//! mode, state save/load.
//!
//! The FFI below is written by hand from `libslirp.h` (a crate binding
//! would pull in bindgen and libclang for a dozen functions).

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{FrameSink, NetBackend, NetError, Proto, UserNetConfig};
use crate::guest_warn;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    use libc::{in6_addr, in_addr, sockaddr_in, sockaddr_in6};

    pub enum Slirp {}

    pub const SLIRP_POLL_IN: c_int = 1;
    pub const SLIRP_POLL_OUT: c_int = 2;
    pub const SLIRP_POLL_PRI: c_int = 4;
    pub const SLIRP_POLL_ERR: c_int = 8;
    pub const SLIRP_POLL_HUP: c_int = 16;

    pub type TimerCb = Option<unsafe extern "C" fn(opaque: *mut c_void)>;
    pub type AddPollCb =
        unsafe extern "C" fn(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int;
    pub type GetREventsCb = unsafe extern "C" fn(idx: c_int, opaque: *mut c_void) -> c_int;

    /// `SlirpCb`, in the header's field order.
    #[repr(C)]
    pub struct SlirpCb {
        pub send_packet: Option<unsafe extern "C" fn(*const c_void, usize, *mut c_void) -> isize>,
        pub guest_error: Option<unsafe extern "C" fn(*const c_char, *mut c_void)>,
        pub clock_get_ns: Option<unsafe extern "C" fn(*mut c_void) -> i64>,
        pub timer_new:
            Option<unsafe extern "C" fn(TimerCb, *mut c_void, *mut c_void) -> *mut c_void>,
        pub timer_free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
        pub timer_mod: Option<unsafe extern "C" fn(*mut c_void, i64, *mut c_void)>,
        pub register_poll_fd: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
        pub unregister_poll_fd: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
        pub notify: Option<unsafe extern "C" fn(*mut c_void)>,
        pub init_completed: Option<unsafe extern "C" fn(*mut Slirp, *mut c_void)>,
        pub timer_new_opaque:
            Option<unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> *mut c_void>,
    }

    /// `SlirpConfig` up to version 4, in the header's field order.
    #[repr(C)]
    pub struct SlirpConfig {
        pub version: u32,
        pub restricted: c_int,
        pub in_enabled: bool,
        pub vnetwork: in_addr,
        pub vnetmask: in_addr,
        pub vhost: in_addr,
        pub in6_enabled: bool,
        pub vprefix_addr6: in6_addr,
        pub vprefix_len: u8,
        pub vhost6: in6_addr,
        pub vhostname: *const c_char,
        pub tftp_server_name: *const c_char,
        pub tftp_path: *const c_char,
        pub bootfile: *const c_char,
        pub vdhcp_start: in_addr,
        pub vnameserver: in_addr,
        pub vnameserver6: in6_addr,
        pub vdnssearch: *const *const c_char,
        pub vdomainname: *const c_char,
        pub if_mtu: usize,
        pub if_mru: usize,
        pub disable_host_loopback: bool,
        pub enable_emu: bool,
        pub outbound_addr: *mut sockaddr_in,
        pub outbound_addr6: *mut sockaddr_in6,
        pub disable_dns: bool,
        pub disable_dhcp: bool,
    }

    #[link(name = "slirp")]
    extern "C" {
        pub fn slirp_new(
            cfg: *const SlirpConfig,
            cb: *const SlirpCb,
            opaque: *mut c_void,
        ) -> *mut Slirp;
        pub fn slirp_cleanup(slirp: *mut Slirp);
        pub fn slirp_pollfds_fill(
            slirp: *mut Slirp,
            timeout: *mut u32,
            add_poll: AddPollCb,
            opaque: *mut c_void,
        );
        pub fn slirp_pollfds_poll(
            slirp: *mut Slirp,
            select_error: c_int,
            get_revents: GetREventsCb,
            opaque: *mut c_void,
        );
        pub fn slirp_input(slirp: *mut Slirp, pkt: *const u8, pkt_len: c_int);
        pub fn slirp_add_hostfwd(
            slirp: *mut Slirp,
            is_udp: c_int,
            host_addr: in_addr,
            host_port: c_int,
            guest_addr: in_addr,
            guest_port: c_int,
        ) -> c_int;
    }
}

/// Frames the guest may have queued for the slirp thread; more are dropped.
const TX_BACKLOG: usize = 256;
/// The longest frame passed to libslirp (its MRU is 1500 + Ethernet header;
/// anything much longer is a guest error).
const MAX_FRAME: usize = 65536;
/// The longest libslirp sleeps without a timer or socket event, so that a
/// stop request is seen even if the eventfd write were lost.
const MAX_POLL_MS: u32 = 1000;

fn in_addr(addr: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from(addr).to_be(),
    }
}

/// A libslirp timer (used by libslirp for IPv6 router advertisements).
struct Timer {
    cb: ffi::TimerCb,
    cb_opaque: *mut c_void,
    /// Expiry in milliseconds of [`Context::clock_ms`], or none.
    expire_ms: Option<i64>,
}

/// What the callbacks see through libslirp's `opaque` pointer; lives on the
/// slirp thread's stack for as long as the `Slirp` instance.
struct Context {
    sink: Arc<dyn FrameSink>,
    start: Instant,
    pollfds: Vec<libc::pollfd>,
    timers: Vec<*mut Timer>,
}

impl Context {
    fn clock_ns(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Recovers the context from libslirp's opaque pointer.
///
/// # Safety
///
/// `opaque` must be the `Context` pointer given to `slirp_new`, alive, and
/// not otherwise borrowed (libslirp calls back only from the slirp thread,
/// inside a libslirp call made by that thread).
unsafe fn context<'a>(opaque: *mut c_void) -> &'a mut Context {
    // SAFETY: guaranteed by the caller, as documented.
    unsafe { &mut *opaque.cast::<Context>() }
}

unsafe extern "C" fn cb_send_packet(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    // SAFETY: libslirp passes a buffer of `len` bytes valid for this call,
    // and our own opaque pointer.
    let (frame, ctx) = unsafe {
        (
            std::slice::from_raw_parts(buf.cast::<u8>(), len),
            context(opaque),
        )
    };
    ctx.sink.deliver(frame);
    isize::try_from(len).unwrap_or(isize::MAX)
}

unsafe extern "C" fn cb_guest_error(msg: *const c_char, _opaque: *mut c_void) {
    // SAFETY: libslirp passes a NUL-terminated message.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    guest_warn!(%msg, "libslirp: guest network error");
}

unsafe extern "C" fn cb_clock_get_ns(opaque: *mut c_void) -> i64 {
    // SAFETY: our opaque pointer, on the slirp thread.
    unsafe { context(opaque) }.clock_ns()
}

unsafe extern "C" fn cb_timer_new(
    cb: ffi::TimerCb,
    cb_opaque: *mut c_void,
    opaque: *mut c_void,
) -> *mut c_void {
    // SAFETY: our opaque pointer, on the slirp thread.
    let ctx = unsafe { context(opaque) };
    let timer = Box::into_raw(Box::new(Timer {
        cb,
        cb_opaque,
        expire_ms: None,
    }));
    ctx.timers.push(timer);
    timer.cast::<c_void>()
}

unsafe extern "C" fn cb_timer_free(timer: *mut c_void, opaque: *mut c_void) {
    // SAFETY: our opaque pointer, on the slirp thread.
    let ctx = unsafe { context(opaque) };
    let timer = timer.cast::<Timer>();
    if let Some(at) = ctx.timers.iter().position(|&t| t == timer) {
        ctx.timers.swap_remove(at);
        // SAFETY: the pointer came from Box::into_raw in cb_timer_new and
        // was still listed, so it was not freed before.
        drop(unsafe { Box::from_raw(timer) });
    }
}

unsafe extern "C" fn cb_timer_mod(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void) {
    // SAFETY: our opaque pointer, on the slirp thread.
    let ctx = unsafe { context(opaque) };
    let timer = timer.cast::<Timer>();
    if ctx.timers.contains(&timer) {
        // SAFETY: a listed timer is a live Box from cb_timer_new.
        unsafe { (*timer).expire_ms = Some(expire_ms) };
    }
}

unsafe extern "C" fn cb_register_poll_fd(_fd: c_int, _opaque: *mut c_void) {}

unsafe extern "C" fn cb_unregister_poll_fd(_fd: c_int, _opaque: *mut c_void) {}

unsafe extern "C" fn cb_notify(_opaque: *mut c_void) {}

unsafe extern "C" fn cb_add_poll(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: our opaque pointer, on the slirp thread.
    let ctx = unsafe { context(opaque) };
    let mut poll_events = 0;
    if events & ffi::SLIRP_POLL_IN != 0 {
        poll_events |= libc::POLLIN;
    }
    if events & ffi::SLIRP_POLL_OUT != 0 {
        poll_events |= libc::POLLOUT;
    }
    if events & ffi::SLIRP_POLL_PRI != 0 {
        poll_events |= libc::POLLPRI;
    }
    ctx.pollfds.push(libc::pollfd {
        fd,
        events: poll_events,
        revents: 0,
    });
    c_int::try_from(ctx.pollfds.len() - 1).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn cb_get_revents(idx: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: our opaque pointer, on the slirp thread.
    let ctx = unsafe { context(opaque) };
    let Some(pollfd) = usize::try_from(idx).ok().and_then(|i| ctx.pollfds.get(i)) else {
        return 0;
    };
    let mut events = 0;
    for (poll, slirp) in [
        (libc::POLLIN, ffi::SLIRP_POLL_IN),
        (libc::POLLOUT, ffi::SLIRP_POLL_OUT),
        (libc::POLLPRI, ffi::SLIRP_POLL_PRI),
        (libc::POLLERR, ffi::SLIRP_POLL_ERR),
        (libc::POLLHUP, ffi::SLIRP_POLL_HUP),
    ] {
        if pollfd.revents & poll != 0 {
            events |= slirp;
        }
    }
    events
}

static CALLBACKS: ffi::SlirpCb = ffi::SlirpCb {
    send_packet: Some(cb_send_packet),
    guest_error: Some(cb_guest_error),
    clock_get_ns: Some(cb_clock_get_ns),
    timer_new: Some(cb_timer_new),
    timer_free: Some(cb_timer_free),
    timer_mod: Some(cb_timer_mod),
    register_poll_fd: Some(cb_register_poll_fd),
    unregister_poll_fd: Some(cb_unregister_poll_fd),
    notify: Some(cb_notify),
    init_completed: None,
    timer_new_opaque: None,
};

fn cstring(text: &str, what: &str) -> Result<CString, NetError> {
    CString::new(text).map_err(|_| NetError::Config(format!("the {what} contains a NUL byte")))
}

/// User-mode NAT for one NIC.
pub struct SlirpBackend {
    tx: SyncSender<Vec<u8>>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlirpBackend {
    /// Starts the stack with `config`, delivering received frames to `sink`.
    /// Fails if libslirp refuses the configuration or a port forward.
    pub fn new(config: &UserNetConfig, sink: Arc<dyn FrameSink>) -> Result<Self, NetError> {
        config.validate()?;
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(TX_BACKLOG);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let config = config.clone();
            let wake = wake.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("slirp".into())
                .spawn(move || {
                    crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
                    run(config, sink, rx, wake, stop, ready_tx)
                })?
        };
        let backend = Self {
            tx,
            wake,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(backend),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(NetError::SlirpInit("(the slirp thread ended)".into())),
        }
    }
}

impl NetBackend for SlirpBackend {
    fn send(&mut self, frame: &[u8]) {
        if frame.len() > MAX_FRAME {
            guest_warn!(len = frame.len(), "dropping an oversized frame");
            return;
        }
        match self.tx.try_send(frame.to_vec()) {
            Ok(()) => {
                // A failed write means the counter is saturated: the thread
                // is already due to wake.
                let _ = self.wake.write(1);
            }
            Err(TrySendError::Full(_)) => {
                tracing::debug!("slirp backlog full; dropping a frame");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for SlirpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The slirp thread: creates the instance, reports whether that worked,
/// then polls until told to stop.
fn run(
    config: UserNetConfig,
    sink: Arc<dyn FrameSink>,
    rx: Receiver<Vec<u8>>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), NetError>>,
) {
    let strings = (|| {
        let tftp = match &config.tftp_root {
            Some(path) => Some(cstring(&path.to_string_lossy(), "TFTP root")?),
            None => None,
        };
        let boot = match &config.boot_file {
            Some(file) => Some(cstring(file, "boot file")?),
            None => None,
        };
        Ok::<_, NetError>((cstring("vireo", "host name")?, tftp, boot))
    })();
    let (hostname, tftp, boot) = match strings {
        Ok(strings) => strings,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    // SAFETY: in6_addr is plain bytes; all zeroes is the unspecified address.
    let zero6: libc::in6_addr = unsafe { std::mem::zeroed() };
    let cfg = ffi::SlirpConfig {
        version: 4,
        restricted: 0,
        in_enabled: true,
        vnetwork: in_addr(config.network),
        vnetmask: in_addr(config.netmask()),
        vhost: in_addr(config.gateway),
        in6_enabled: false,
        vprefix_addr6: zero6,
        vprefix_len: 0,
        vhost6: zero6,
        vhostname: hostname.as_ptr(),
        tftp_server_name: std::ptr::null(),
        tftp_path: tftp.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        bootfile: boot.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        vdhcp_start: in_addr(config.dhcp_start),
        vnameserver: in_addr(config.dns),
        vnameserver6: zero6,
        vdnssearch: std::ptr::null(),
        vdomainname: std::ptr::null(),
        if_mtu: 0,
        if_mru: 0,
        disable_host_loopback: false,
        enable_emu: false,
        outbound_addr: std::ptr::null_mut(),
        outbound_addr6: std::ptr::null_mut(),
        disable_dns: false,
        disable_dhcp: false,
    };
    let mut ctx = Context {
        sink,
        start: Instant::now(),
        pollfds: Vec::new(),
        timers: Vec::new(),
    };
    let opaque = std::ptr::from_mut(&mut ctx).cast::<c_void>();
    // SAFETY: cfg and its strings outlive the call (libslirp copies them);
    // CALLBACKS is static; `opaque` points to `ctx`, which outlives the
    // instance (cleaned up below) and is only touched through callbacks
    // from here on.
    let slirp = unsafe { ffi::slirp_new(&cfg, &CALLBACKS, opaque) };
    if slirp.is_null() {
        let _ = ready.send(Err(NetError::SlirpInit(format!(
            "{}/{}",
            config.network, config.prefix
        ))));
        return;
    }
    for forward in &config.forwards {
        // SAFETY: a live instance; plain values. A guest address of 0 means
        // libslirp's first DHCP address.
        let result = unsafe {
            ffi::slirp_add_hostfwd(
                slirp,
                c_int::from(forward.proto == Proto::Udp),
                in_addr(forward.host_addr),
                c_int::from(forward.host_port),
                in_addr(Ipv4Addr::UNSPECIFIED),
                c_int::from(forward.guest_port),
            )
        };
        if result < 0 {
            // SAFETY: a live instance, not used again.
            unsafe { ffi::slirp_cleanup(slirp) };
            let _ = ready.send(Err(NetError::HostForward {
                proto: forward.proto,
                host: forward.host_addr,
                port: forward.host_port,
            }));
            return;
        }
    }
    let _ = ready.send(Ok(()));

    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        ctx.pollfds.clear();
        ctx.pollfds.push(libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(wake.as_ref()),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut timeout = MAX_POLL_MS;
        // SAFETY: a live instance; the callback gets our context pointer.
        unsafe { ffi::slirp_pollfds_fill(slirp, &mut timeout, cb_add_poll, opaque) };
        let now_ms = ctx.clock_ns() / 1_000_000;
        for &timer in &ctx.timers {
            // SAFETY: listed timers are live Boxes from cb_timer_new.
            if let Some(expire) = unsafe { (*timer).expire_ms } {
                let wait = u32::try_from((expire - now_ms).max(0)).unwrap_or(u32::MAX);
                timeout = timeout.min(wait);
            }
        }
        // SAFETY: pollfds is a valid array of its length.
        let ready_fds = unsafe {
            libc::poll(
                ctx.pollfds.as_mut_ptr(),
                ctx.pollfds.len() as libc::nfds_t,
                c_int::try_from(timeout).unwrap_or(c_int::MAX),
            )
        };
        if ctx.pollfds[0].revents & libc::POLLIN != 0 {
            let _ = wake.read();
        }
        pending.extend(rx.try_iter());
        while let Some(frame) = pending.pop_front() {
            // SAFETY: a live instance; the frame (at most MAX_FRAME bytes,
            // checked in send) is valid for the call.
            unsafe { ffi::slirp_input(slirp, frame.as_ptr(), frame.len() as c_int) };
        }
        // SAFETY: a live instance; the callback reads this round's pollfds.
        unsafe {
            ffi::slirp_pollfds_poll(slirp, c_int::from(ready_fds < 0), cb_get_revents, opaque)
        };
        let now_ms = ctx.clock_ns() / 1_000_000;
        let due: Vec<*mut Timer> = ctx
            .timers
            .iter()
            .copied()
            // SAFETY: listed timers are live Boxes from cb_timer_new.
            .filter(|&t| unsafe { (*t).expire_ms }.is_some_and(|e| e <= now_ms))
            .collect();
        for timer in due {
            // A callback may free another due timer: skip unlisted ones.
            if !ctx.timers.contains(&timer) {
                continue;
            }
            // SAFETY: listed, so live; the callback is libslirp's own.
            unsafe {
                (*timer).expire_ms = None;
                if let Some(cb) = (*timer).cb {
                    cb((*timer).cb_opaque);
                }
            }
        }
    }
    // SAFETY: a live instance, not used after this.
    unsafe { ffi::slirp_cleanup(slirp) };
    for timer in ctx.timers.drain(..) {
        // SAFETY: timers libslirp did not free are still our Boxes.
        drop(unsafe { Box::from_raw(timer) });
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Vec<u8>>>);
    impl FrameSink for Collect {
        fn deliver(&self, frame: &[u8]) {
            self.0.lock().unwrap().push(frame.to_vec());
        }
    }

    fn wait_for(sink: &Collect, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        for _ in 0..500 {
            if let Some(frame) = sink.0.lock().unwrap().iter().find(|f| pred(f)) {
                return frame.clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no matching frame arrived");
    }

    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn arp_request(sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&sender_ip);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target_ip);
        f
    }

    /// The gateway answers ARP, and a forwarded host UDP port reaches the
    /// guest's address as a frame.
    #[test]
    fn arp_reply_and_udp_forward() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let config = UserNetConfig {
            forwards: vec![super::super::PortForward {
                proto: Proto::Udp,
                host_addr: Ipv4Addr::LOCALHOST,
                host_port: port,
                guest_port: 7777,
            }],
            ..Default::default()
        };
        let sink = Arc::new(Collect::default());
        let mut backend = SlirpBackend::new(&config, sink.clone()).unwrap();
        backend.send(&arp_request([192, 168, 122, 2], [192, 168, 122, 1]));
        let reply = wait_for(&sink, |f| f.len() >= 42 && f[12..14] == [8, 6]);
        assert_eq!(&reply[0..6], &GUEST_MAC);
        assert_eq!(&reply[28..32], &[192, 168, 122, 1], "sender is the gateway");

        let host = UdpSocket::bind("127.0.0.1:0").unwrap();
        host.send_to(b"to-guest", ("127.0.0.1", port)).unwrap();
        let frame = wait_for(&sink, |f| {
            f.len() > 42 && f[12..14] == [8, 0] && f[23] == 17
        });
        assert_eq!(
            &frame[30..34],
            &[192, 168, 122, 2],
            "to the DHCP start address"
        );
        assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 7777);
        assert_eq!(&frame[42..], b"to-guest");
    }

    #[test]
    fn a_forward_of_a_port_in_use_fails() {
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = UserNetConfig {
            forwards: vec![super::super::PortForward {
                proto: Proto::Udp,
                host_addr: Ipv4Addr::LOCALHOST,
                host_port: busy.local_addr().unwrap().port(),
                guest_port: 7,
            }],
            ..Default::default()
        };
        let error = SlirpBackend::new(&config, Arc::new(Collect::default()))
            .err()
            .unwrap();
        assert!(matches!(error, NetError::HostForward { .. }), "{error}");
    }
}
