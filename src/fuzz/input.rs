//! How a fuzz input becomes a guest's actions: a byte reader that never
//! fails (missing bytes read as zero, so every input means something) and a
//! small program of port, MMIO and RAM accesses shared by the device
//! targets.

use vm_memory::{Bytes, GuestAddress};

use crate::devices::GuestRam;

/// Guest RAM every device target gets: small, so that random addresses
/// often land inside it, and cheap to set up for each input.
pub const RAM_SIZE: usize = 64 << 10;

/// Most operations one input may run: inputs stay fast whatever their
/// length.
pub const MAX_OPS: usize = 4096;

/// Reads little-endian integers and slices off the front of an input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }
}

/// A fresh guest RAM of [`RAM_SIZE`] bytes.
pub fn ram() -> GuestRam {
    GuestRam::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("64 KiB of guest RAM")
}

/// Copies a length-prefixed image (u16 length, then the bytes) from the
/// input to the start of guest RAM: the descriptor tables, schedules and
/// buffers the guest prepared before it touched the device.
pub fn load_ram_image(input: &mut Input, mem: &GuestRam) {
    let len = usize::from(input.u16());
    let image = input.bytes(len);
    // The image is at most 64 KiB, which is RAM_SIZE: it always fits.
    let _ = mem.write_slice(image, GuestAddress(0));
}

/// The guest's side of a device: where its accesses go.
pub trait Machine {
    /// The regions the program may address, as (space, base, length):
    /// `space` is the machine's own numbering (port bus, a BAR, …).
    fn regions(&self) -> &[(u8, u64, u64)];
    fn read(&mut self, space: u8, addr: u64, data: &mut [u8]);
    fn write(&mut self, space: u8, addr: u64, data: &[u8]);
    /// Time passing or the guest kicking the device (a frame, a queue
    /// notification); `arg` comes from the input.
    fn tick(&mut self, arg: u8);
    /// Guest RAM, which the program may rewrite between accesses.
    fn ram(&self) -> &GuestRam;
}

/// Runs the rest of `input` as a program against `machine`. Each
/// operation is an opcode byte, then its operands:
///
/// - `0` write: region, offset, size class, value
/// - `1` read: region, offset, size class
/// - `2` string read (`rep ins`): region, offset, u16 length
/// - `3` string write (`rep outs`): region, offset, u8 length, bytes
/// - `4` RAM write: u16 address, u8 length, bytes
/// - `5` tick: argument
///
/// Other opcodes are taken modulo 6. The size class picks 1, 2, 4 or 8
/// bytes; offsets wrap inside their region.
pub fn run_program(machine: &mut dyn Machine, input: &mut Input) {
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        let op = input.u8() % 6;
        if op == 4 {
            let addr = u64::from(input.u16());
            let len = usize::from(input.u8());
            let data = input.bytes(len);
            let _ = machine.ram().write_slice(data, GuestAddress(addr));
            continue;
        }
        if op == 5 {
            let arg = input.u8();
            machine.tick(arg);
            continue;
        }
        let regions = machine.regions();
        if regions.is_empty() {
            return;
        }
        let (space, base, len) = regions[usize::from(input.u8()) % regions.len()];
        let addr = base + u64::from(input.u16()) % len.max(1);
        match op {
            0 => {
                let size = 1usize << (input.u8() % 4);
                let value = input.u64().to_le_bytes();
                machine.write(space, addr, &value[..size]);
            }
            1 => {
                let size = 1usize << (input.u8() % 4);
                let mut data = [0u8; 8];
                machine.read(space, addr, &mut data[..size]);
            }
            2 => {
                let len = usize::from(input.u16()) % 8192;
                let mut data = vec![0u8; len];
                machine.read(space, addr, &mut data);
            }
            _ => {
                let len = usize::from(input.u8());
                let data = input.bytes(len);
                machine.write(space, addr, data);
            }
        }
    }
}

/// Builds inputs for [`run_program`] (seed corpora and tests).
#[derive(Default)]
pub struct Program {
    pub bytes: Vec<u8>,
}

impl Program {
    /// A program whose RAM image is `image`.
    pub fn with_ram(image: &[u8]) -> Self {
        let mut bytes = (image.len() as u16).to_le_bytes().to_vec();
        bytes.extend_from_slice(image);
        Self { bytes }
    }

    /// Writes `value` (`size` bytes: 1, 2, 4 or 8) at `offset` of region
    /// number `region`.
    pub fn write(&mut self, region: u8, offset: u16, size: usize, value: u64) -> &mut Self {
        self.bytes.extend([0, region]);
        self.bytes.extend(offset.to_le_bytes());
        self.bytes.push(size.trailing_zeros() as u8);
        self.bytes.extend(value.to_le_bytes());
        self
    }

    pub fn read(&mut self, region: u8, offset: u16, size: usize) -> &mut Self {
        self.bytes.extend([1, region]);
        self.bytes.extend(offset.to_le_bytes());
        self.bytes.push(size.trailing_zeros() as u8);
        self
    }

    pub fn read_string(&mut self, region: u8, offset: u16, len: u16) -> &mut Self {
        self.bytes.extend([2, region]);
        self.bytes.extend(offset.to_le_bytes());
        self.bytes.extend(len.to_le_bytes());
        self
    }

    pub fn write_string(&mut self, region: u8, offset: u16, data: &[u8]) -> &mut Self {
        self.bytes.extend([3, region]);
        self.bytes.extend(offset.to_le_bytes());
        self.bytes.push(data.len() as u8);
        self.bytes.extend_from_slice(data);
        self
    }

    pub fn ram(&mut self, addr: u16, data: &[u8]) -> &mut Self {
        self.bytes.push(4);
        self.bytes.extend(addr.to_le_bytes());
        self.bytes.push(data.len() as u8);
        self.bytes.extend_from_slice(data);
        self
    }

    pub fn tick(&mut self, arg: u8) -> &mut Self {
        self.bytes.extend([5, arg]);
        self
    }

    pub fn build(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// A RAM image under construction: little-endian values at addresses.
pub struct Image(pub Vec<u8>);

impl Image {
    pub fn new(len: usize) -> Self {
        Self(vec![0; len])
    }

    pub fn put(&mut self, at: usize, bytes: &[u8]) -> &mut Self {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
        self
    }

    pub fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }

    pub fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }

    pub fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }
}
