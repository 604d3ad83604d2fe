//! smoltcp behind the same link model: a smoltcp `phy::Device` that puts one of the
//! runtime's `Impairer`s on each direction of another device (the TUN device), so the
//! smoltcp baseline (`server/smol.rs`) sees loss, reordering and delay exactly as
//! tunstack's runtime applies them to itself (`Impairment::rx` towards the stack,
//! `Impairment::tx` from it, the same seeds).
//!
//! Held packets come out when due: received ones through `receive`, transmitted ones
//! are written to the inner device at every call; [`ImpairedDevice::due_in`] tells the
//! poll loop when to wake up for them.

use std::time::Duration as StdDuration;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant as SmolInstant;
use tunstack::link::{Impairer, Impairment};
use tunstack::Instant;

fn core_time(t: SmolInstant) -> Instant {
    Instant::from_micros(t.total_micros().max(0) as u64)
}

/// `inner` with an impaired link on both directions.
pub struct ImpairedDevice<D> {
    inner: D,
    rx: Impairer,
    tx: Impairer,
    mtu: usize,
    buf: Vec<u8>,
}

impl<D: Device> ImpairedDevice<D> {
    pub fn new(inner: D, imp: Impairment) -> std::io::Result<ImpairedDevice<D>> {
        imp.validate()?;
        let mtu = inner.capabilities().max_transmission_unit;
        Ok(ImpairedDevice { rx: imp.rx(mtu), tx: imp.tx(mtu), inner, mtu, buf: vec![0; mtu] })
    }

    /// Write the transmitted packets that are due to the inner device.
    fn flush(&mut self, now: SmolInstant) {
        let ImpairedDevice { inner, tx, .. } = self;
        tx.release(core_time(now), |pkt, _| {
            if let Some(t) = inner.transmit(now) {
                phy::TxToken::consume(t, pkt.len(), |b| b.copy_from_slice(pkt));
            }
        });
    }

    /// Read what the inner device has into the receive direction's link model.
    fn pull(&mut self, now: SmolInstant) {
        for _ in 0..64 {
            let Some((rx, _)) = self.inner.receive(now) else { break };
            let ImpairedDevice { rx: model, .. } = self;
            phy::RxToken::consume(rx, |pkt| model.push(core_time(now), pkt));
        }
    }

    /// How long until a held packet is due (for the poll loop's sleep).
    pub fn due_in(&self, now: SmolInstant) -> Option<StdDuration> {
        let now = core_time(now);
        [self.rx.next_release(), self.tx.next_release()].into_iter().flatten().min().map(|t| t - now)
    }
}

pub struct Rx(Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct Tx<'a> {
    model: &'a mut Impairer,
    now: Instant,
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.model.push(self.now, &buf);
        r
    }
}

impl<D: Device> Device for ImpairedDevice<D> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        self.flush(now);
        self.pull(now);
        let n = self.rx.pop_due(core_time(now), &mut self.buf)?;
        let pkt = self.buf[..n].to_vec();
        Some((Rx(pkt), Tx { model: &mut self.tx, now: core_time(now) }))
    }

    fn transmit(&mut self, now: SmolInstant) -> Option<Tx<'_>> {
        self.flush(now);
        Some(Tx { model: &mut self.tx, now: core_time(now) })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = self.inner.capabilities();
        c.max_transmission_unit = self.mtu;
        c
    }
}
