//! libvirt's `<driver cache= discard=>` applied to any disk: a wrapper
//! around a [`BlockBackend`] that decides what a guest's flush, discard
//! and write-zeroes turn into, for IDE and virtio-blk alike.
//!
//! Cache modes as QEMU maps them (libvirt's formatdomain "Hard drives,
//! floppy disks, CDROMs"): `writeback` (and `default`) leave written data
//! in the host's page cache until the guest flushes; `writethrough` makes
//! each write durable before it completes (and virtio-blk then offers no
//! flush command, as QEMU's write cache off); `unsafe` ignores the guest's
//! flushes. `none` and `directsync` are QEMU's writeback and writethrough
//! with `O_DIRECT`: their durability is honoured here, but the host page
//! cache is still used (the VMM's configuration says so as a warning).
//!
//! Discard as QEMU's `-drive discard=`: `ignore` (libvirt's and QEMU's
//! default) completes a guest's discard without touching the image, and a
//! write-zeroes that may unmap keeps the space allocated; `unmap` passes
//! both on, so raw files get holes and qcow2 clusters are freed. virtio-blk
//! offers DISCARD in both cases, as QEMU does.

use std::io;

use super::BlockBackend;

/// When written data is made durable (libvirt's `cache=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Durable when the guest flushes.
    #[default]
    WriteBack,
    /// Durable when each write completes.
    WriteThrough,
    /// The guest's flushes are ignored: fast, and a host crash loses data.
    Unsafe,
}

impl CacheMode {
    /// Parses libvirt's `cache=`: `default`, `writeback`, `none`,
    /// `writethrough`, `directsync` or `unsafe`.
    pub fn from_libvirt(name: &str) -> Option<Self> {
        Some(match name {
            "default" | "writeback" | "none" => Self::WriteBack,
            "writethrough" | "directsync" => Self::WriteThrough,
            "unsafe" => Self::Unsafe,
            _ => return None,
        })
    }
}

/// What a guest's discard does (libvirt's `discard=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscardMode {
    /// Discards complete without effect.
    #[default]
    Ignore,
    /// Discards free the space behind them.
    Unmap,
}

impl DiscardMode {
    /// Parses libvirt's `discard=`: `ignore` or `unmap`.
    pub fn from_libvirt(name: &str) -> Option<Self> {
        match name {
            "ignore" => Some(Self::Ignore),
            "unmap" => Some(Self::Unmap),
            _ => None,
        }
    }
}

/// A disk with its cache and discard policy.
pub struct WithPolicy {
    inner: Box<dyn BlockBackend>,
    cache: CacheMode,
    discard: DiscardMode,
}

impl WithPolicy {
    pub fn new(inner: Box<dyn BlockBackend>, cache: CacheMode, discard: DiscardMode) -> Self {
        Self {
            inner,
            cache,
            discard,
        }
    }

    /// The flush a write-through disk does after each change.
    fn write_through(&mut self) -> io::Result<()> {
        if self.cache == CacheMode::WriteThrough {
            self.inner.flush()
        } else {
            Ok(())
        }
    }
}

impl BlockBackend for WithPolicy {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)?;
        self.write_through()
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.cache {
            CacheMode::Unsafe => Ok(()),
            CacheMode::WriteBack | CacheMode::WriteThrough => self.inner.flush(),
        }
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match self.discard {
            // Still refused on a read-only disk or past its end.
            DiscardMode::Ignore if self.inner.read_only() => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            )),
            DiscardMode::Ignore => super::check_range(
                offset,
                usize::try_from(len).unwrap_or(usize::MAX),
                self.size(),
            ),
            DiscardMode::Unmap => {
                self.inner.discard(offset, len)?;
                self.write_through()
            }
        }
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let unmap = unmap && self.discard == DiscardMode::Unmap;
        self.inner.write_zeroes(offset, len, unmap)?;
        self.write_through()
    }

    fn discard_granularity(&self) -> u64 {
        self.inner.discard_granularity()
    }

    fn writes_through(&self) -> bool {
        self.cache == CacheMode::WriteThrough || self.inner.writes_through()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records the calls that reach the disk.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl BlockBackend for Recorder {
        fn size(&self) -> u64 {
            1 << 20
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&mut self, _: &mut [u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("write {offset}+{}", buf.len()));
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("flush".into());
            Ok(())
        }
        fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("discard {offset}+{len}"));
            Ok(())
        }
        fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("zeroes {offset}+{len} unmap={unmap}"));
            Ok(())
        }
        fn identity(&self) -> String {
            "recorder".into()
        }
    }

    fn run(cache: CacheMode, discard: DiscardMode) -> (Vec<String>, bool) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut disk = WithPolicy::new(Box::new(Recorder(calls.clone())), cache, discard);
        disk.write_at(&[0; 512], 0).unwrap();
        disk.flush().unwrap();
        disk.discard(4096, 4096).unwrap();
        disk.write_zeroes(8192, 512, true).unwrap();
        if discard == DiscardMode::Ignore {
            assert!(disk.discard(1 << 20, 512).is_err(), "past the end");
        }
        let calls = calls.lock().unwrap().clone();
        (calls, disk.writes_through())
    }

    #[test]
    fn cache_and_discard_modes_decide_what_reaches_the_disk() {
        assert_eq!(
            run(CacheMode::WriteBack, DiscardMode::Ignore),
            (
                vec![
                    "write 0+512".to_string(),
                    "flush".into(),
                    "zeroes 8192+512 unmap=false".into()
                ],
                false
            )
        );
        assert_eq!(
            run(CacheMode::Unsafe, DiscardMode::Unmap).0,
            [
                "write 0+512",
                "discard 4096+4096",
                "zeroes 8192+512 unmap=true"
            ]
        );
        assert_eq!(
            run(CacheMode::WriteThrough, DiscardMode::Unmap),
            (
                [
                    "write 0+512",
                    "flush",
                    "flush",
                    "discard 4096+4096",
                    "flush",
                    "zeroes 8192+512 unmap=true",
                    "flush"
                ]
                .map(String::from)
                .to_vec(),
                true
            )
        );
    }

    #[test]
    fn libvirt_names() {
        assert_eq!(CacheMode::from_libvirt("none"), Some(CacheMode::WriteBack));
        assert_eq!(
            CacheMode::from_libvirt("directsync"),
            Some(CacheMode::WriteThrough)
        );
        assert_eq!(CacheMode::from_libvirt("unsafe"), Some(CacheMode::Unsafe));
        assert_eq!(CacheMode::from_libvirt("fast"), None);
        assert_eq!(DiscardMode::from_libvirt("unmap"), Some(DiscardMode::Unmap));
        assert_eq!(DiscardMode::from_libvirt("on"), None);
    }
}
