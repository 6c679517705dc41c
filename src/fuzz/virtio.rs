//! virtio-blk and virtio-net with queues whose descriptor tables, rings and
//! buffers the input wrote: the guest controls every descriptor (address,
//! length, flags, next, indirect tables) and the avail ring.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::input::{load_ram_image, ram, run_program, Image, Input, Machine, Program};
use super::MemDisk;
use crate::devices::virtio::{
    VirtioBlock, VirtioDevice, VirtioInterrupt, VirtioNet, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::devices::GuestRam;
use crate::net::{FrameSink, NetBackend};

/// Where the driver put its queues: queue `n` at `QUEUE_BASE * (n + 1)`,
/// its avail ring 4 KiB and its used ring 8 KiB above the table (room
/// for the largest table, 256 entries).
const QUEUE_BASE: u64 = 0x4000;
const DESC_FLAG_NEXT: u16 = 1;
const DESC_FLAG_WRITE: u16 = 2;

struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn signal_used_queue(&self, _queue: u16) {}
    fn signal_config_change(&self) {}
    fn set_needs_reset(&self) {}
}

/// Queues as the transport builds them when the driver sets DRIVER_OK;
/// the size (a power of two up to 256) is the input's first byte.
fn queues(count: usize, size_byte: u8) -> Vec<Queue> {
    let size = 1u16 << (size_byte % 9);
    (0..count as u64)
        .map(|n| {
            let base = QUEUE_BASE * (n + 1);
            let mut queue = Queue::new(256).expect("256 is a valid queue size");
            let _ = queue.try_set_size(size);
            let _ = queue.try_set_desc_table_address(GuestAddress(base));
            let _ = queue.try_set_avail_ring_address(GuestAddress(base + 0x1000));
            let _ = queue.try_set_used_ring_address(GuestAddress(base + 0x2000));
            queue.set_ready(true);
            queue
        })
        .collect()
}

/// A device behind its transport: region 0 is the device configuration,
/// region 1 the queue notification registers, region 2 (net only) the
/// wire, where a write delivers a frame to the guest.
struct VirtioMachine<D> {
    device: D,
    mem: GuestRam,
    queues: u16,
    sink: Option<Arc<dyn FrameSink>>,
}

impl<D: VirtioDevice> Machine for VirtioMachine<D> {
    fn regions(&self) -> &[(u8, u64, u64)] {
        if self.sink.is_some() {
            &[(0, 0, 0x100), (1, 0, 2), (2, 0, 1)]
        } else {
            &[(0, 0, 0x100), (1, 0, 1)]
        }
    }

    fn read(&mut self, space: u8, addr: u64, data: &mut [u8]) {
        if space == 0 {
            self.device.read_config(addr, data);
        }
    }

    fn write(&mut self, space: u8, addr: u64, data: &[u8]) {
        match space {
            0 => self.device.write_config(addr, data),
            1 => self.device.queue_notify(addr as u16),
            _ => {
                if let Some(sink) = &self.sink {
                    sink.deliver(data);
                }
            }
        }
    }

    fn tick(&mut self, arg: u8) {
        self.device
            .queue_notify(u16::from(arg) % self.queues.max(1));
    }

    fn ram(&self) -> &GuestRam {
        &self.mem
    }
}

/// Runs `device` on the input; returns the guest RAM it worked on.
fn run_device<D: VirtioDevice>(
    mut device: D,
    sink: Option<Arc<dyn FrameSink>>,
    data: &[u8],
) -> GuestRam {
    let mut input = Input::new(data);
    let size_byte = input.u8();
    let features = input.u64();
    let mem = ram();
    load_ram_image(&mut input, &mem);
    let count = device.queue_max_sizes().len();
    // The driver acks what it likes of what was offered, as the transport
    // enforces.
    let offered =
        device.device_features() | 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_INDIRECT_DESC;
    device.ack_features(features & offered);
    if device
        .activate(mem.clone(), queues(count, size_byte), Arc::new(NoInterrupt))
        .is_err()
    {
        return mem;
    }
    let mut machine = VirtioMachine {
        device,
        mem,
        queues: count as u16,
        sink,
    };
    run_program(&mut machine, &mut input);
    machine.device.reset();
    machine.mem
}

/// virtio-blk over a 64 KiB disk in memory.
pub fn virtio_blk(data: &[u8]) {
    run_blk(data);
}

fn run_blk(data: &[u8]) -> GuestRam {
    let read_only = data.first().is_some_and(|b| b & 0x80 != 0);
    let device = VirtioBlock::new(Box::new(MemDisk::new(64 << 10, read_only)), "fuzz".into());
    run_device(device, None, data)
}

/// A backend that drops what the guest sends.
struct Discard;

impl NetBackend for Discard {
    fn send(&mut self, _frame: &[u8]) {}
}

/// virtio-net: transmit chains read from the guest, frames delivered into
/// the guest's receive buffers.
pub fn virtio_net(data: &[u8]) {
    run_net(data);
}

fn run_net(data: &[u8]) -> Option<GuestRam> {
    let sink: Arc<Mutex<Option<Arc<dyn FrameSink>>>> = Arc::default();
    let keep = sink.clone();
    let Ok(device) = VirtioNet::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], move |s| {
        *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        Ok(Box::new(Discard) as Box<dyn NetBackend>)
    }) else {
        return None;
    };
    let sink = sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Some(run_device(device, sink, data))
}

/// A queue of 16 at `queue` with the given chains (address, length,
/// flags) made available in order.
fn chains(image: &mut Image, queue: u64, chains: &[&[(u64, u32, u16)]]) {
    let base = (QUEUE_BASE * (queue + 1)) as usize;
    let mut desc = 0u16;
    for (n, chain) in chains.iter().enumerate() {
        image.u16(base + 0x1000 + 4 + 2 * n, desc);
        for (i, &(addr, len, flags)) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            let at = base + 16 * usize::from(desc);
            image
                .u64(at, addr)
                .u32(at + 8, len)
                .u16(at + 12, flags | if last { 0 } else { DESC_FLAG_NEXT })
                .u16(at + 14, desc + 1);
            desc += 1;
        }
    }
    image.u16(base + 0x1000 + 2, chains.len() as u16);
}

fn header(image: &mut Image, at: usize, request: u32, sector: u64) {
    image.u32(at, request).u64(at + 8, sector);
}

/// Seeds: the requests Linux sends (read, write, flush, get-id, discard),
/// and a chain through an indirect table.
pub fn virtio_blk_seeds() -> Vec<Vec<u8>> {
    let features = (1u64 << 32 | 1 << 28 | 0xffff).to_le_bytes();
    let mut image = Image::new(0x6000);
    header(&mut image, 0x100, 0, 2); // read sector 2
    header(&mut image, 0x120, 1, 3); // write sector 3
    header(&mut image, 0x140, 4, 0); // flush
    header(&mut image, 0x160, 8, 0); // get id
    header(&mut image, 0x180, 11, 0); // discard
    image.u64(0x1800, 4).u32(0x1808, 2); // one discard range
    chains(
        &mut image,
        0,
        &[
            &[
                (0x100, 16, 0),
                (0x1000, 512, DESC_FLAG_WRITE),
                (0x1f00, 1, DESC_FLAG_WRITE),
            ],
            &[
                (0x120, 16, 0),
                (0x1200, 512, 0),
                (0x1f01, 1, DESC_FLAG_WRITE),
            ],
            &[(0x140, 16, 0), (0x1f02, 1, DESC_FLAG_WRITE)],
            &[
                (0x160, 16, 0),
                (0x1400, 20, DESC_FLAG_WRITE),
                (0x1f03, 1, DESC_FLAG_WRITE),
            ],
            &[
                (0x180, 16, 0),
                (0x1800, 16, 0),
                (0x1f04, 1, DESC_FLAG_WRITE),
            ],
        ],
    );
    let mut plain = vec![4u8];
    plain.extend(features);
    plain.extend(Program::with_ram(&image.0).tick(0).read(0, 0, 8).build());

    // Indirect: the head descriptor points at a table of three.
    let mut image = Image::new(0x6000);
    header(&mut image, 0x100, 0, 1);
    image
        .u64(0x3000, 0x100)
        .u32(0x3008, 16)
        .u16(0x300c, DESC_FLAG_NEXT)
        .u16(0x300e, 1)
        .u64(0x3010, 0x1000)
        .u32(0x3018, 1024)
        .u16(0x301c, DESC_FLAG_NEXT | DESC_FLAG_WRITE)
        .u16(0x301e, 2)
        .u64(0x3020, 0x1f00)
        .u32(0x3028, 1)
        .u16(0x302c, DESC_FLAG_WRITE);
    chains(&mut image, 0, &[&[(0x3000, 48, 4)]]);
    let mut indirect = vec![4u8];
    indirect.extend(features);
    indirect.extend(Program::with_ram(&image.0).write(1, 0, 2, 0).build());
    vec![plain, indirect]
}

/// Seeds: a transmitted frame, and a received one landing in a posted
/// buffer.
pub fn virtio_net_seeds() -> Vec<Vec<u8>> {
    let features = (1u64 << 32 | 1 << 5 | 1 << 16).to_le_bytes();
    let mut image = Image::new(0xa000);
    // Receive buffer (queue 0) and a transmit frame (queue 1).
    chains(&mut image, 0, &[&[(0x1000, 1526, DESC_FLAG_WRITE)]]);
    let frame: Vec<u8> = (0..60u8).collect();
    image.put(0x2000 + 12, &frame);
    chains(&mut image, 1, &[&[(0x2000, 12 + 60, 0)]]);
    let mut seed = vec![4u8];
    seed.extend(features);
    seed.extend(
        Program::with_ram(&image.0)
            .tick(1)
            .write_string(2, 0, &frame)
            .tick(0)
            .read(0, 0, 8)
            .build(),
    );
    vec![seed]
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;

    fn used_idx(mem: &GuestRam, queue: u64) -> u16 {
        mem.read_obj(GuestAddress(QUEUE_BASE * (queue + 1) + 0x2002))
            .unwrap()
    }

    /// The seeds reach the device: every request completes with status OK.
    #[test]
    fn block_seeds_complete_their_requests() {
        let seeds = virtio_blk_seeds();
        let mem = run_blk(&seeds[0]);
        assert_eq!(used_idx(&mem, 0), 5);
        let mut status = [0xffu8; 5];
        mem.read_slice(&mut status, GuestAddress(0x1f00)).unwrap();
        assert_eq!(status, [0; 5]);
        let mut id = [0u8; 4];
        mem.read_slice(&mut id, GuestAddress(0x1400)).unwrap();
        assert_eq!(&id, b"fuzz");
        let mem = run_blk(&seeds[1]);
        assert_eq!(used_idx(&mem, 0), 1, "indirect chain");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1f00)).unwrap(), 0);
    }

    #[test]
    fn net_seed_sends_and_receives() {
        let mem = run_net(&virtio_net_seeds()[0]).unwrap();
        assert_eq!(used_idx(&mem, 1), 1, "transmitted");
        assert_eq!(used_idx(&mem, 0), 1, "received");
        let mut frame = [0u8; 4];
        mem.read_slice(&mut frame, GuestAddress(0x1000 + 12))
            .unwrap();
        assert_eq!(frame, [0, 1, 2, 3]);
    }
}
