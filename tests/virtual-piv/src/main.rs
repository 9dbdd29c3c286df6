//! A virtual PIV card for Signet's tests: piv-authenticator (the Nitrokey PIV application) on
//! trussed's software platform, plugged into vsmartcard's vpcd reader (TCP, port 35963), so
//! pcscd shows a card that the `yubikey` crate, ykcs11 and OpenSC open like a YubiKey.
//!
//! What a YubiKey does and piv-authenticator does not is done here, around it:
//! - the 5-byte PIV AID YubiKey tools select is expanded to the full one;
//! - GET VERSION says 5.4.3 (3DES management key, metadata and attestation present);
//! - a reply longer than the command's Le (256 when it carries none) is chained with 61xx and
//!   GET RESPONSE, and chained commands (CLA 0x10) are joined;
//! - GET METADATA (00 F7) is answered from what this process saw generated in each slot;
//! - attestation (00 F9) signs a certificate for a slot's key with a test attestation
//!   intermediate (the f9 certificate, object 5FFF01), under a test root written to
//!   `--root FILE`. The firmware, serial and PIN/touch policy extensions follow Yubico's.
//!
//! **For tests only**: trussed's software platform seeds its RNG the same on every start, and
//! the card keeps everything in memory. `--control DIR`: while `DIR/removed` exists the card is
//! out of the reader (its state kept), as a pulled and reinserted YubiKey; when it goes back in
//! it takes the vpcd port written in `DIR/port`, if there is one (vpcd's second reader listens
//! on 35964): the same card plugged into another reader.

mod dispatch;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use piv_authenticator::{Authenticator, Options};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SubjectPublicKeyInfo,
};

const SELECT_PREFIX: [u8; 5] = [0xa0, 0x00, 0x00, 0x03, 0x08];
const PIV_AID: [u8; 11] = [
    0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
const VERSION: [u8; 3] = [5, 4, 3];
const SERIAL: u32 = 5_437_251;
const OK: [u8; 2] = [0x90, 0x00];
const NOT_FOUND: [u8; 2] = [0x6a, 0x88];
const WRONG_DATA: [u8; 2] = [0x6a, 0x80];

/// What the card process knows of a slot's key (piv-authenticator keeps no such record).
#[derive(Clone)]
struct SlotKey {
    algorithm: u8,
    pin_policy: u8,
    touch_policy: u8,
    generated: bool,
    /// The inner TLVs of the 7F49 public key template (86 point, or 81 modulus 82 exponent).
    public: Vec<u8>,
}

struct Attestation {
    root_pem: String,
    intermediate_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

struct Card<T: piv_authenticator::Client> {
    app: Authenticator<T>,
    slots: HashMap<u8, SlotKey>,
    /// Data of a command chain (CLA 0x10) so far.
    chain: Vec<u8>,
    /// The rest of a reply not yet fetched with GET RESPONSE.
    pending: Vec<u8>,
    attestation: Attestation,
    management_default: bool,
    /// PIN attempts left, as the VERIFY answers have said (for GET METADATA of the PIN).
    pin_retries: u8,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut root, mut control, mut port) = (None, None, vpicc::DEFAULT_PORT);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = args.next().map(PathBuf::from),
            "--control" => control = args.next().map(PathBuf::from),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            _ => {
                eprintln!("usage: signet-virtual-piv --root FILE [--control DIR] [--port N]");
                std::process::exit(2);
            }
        }
    }
    let Some(root) = root else {
        eprintln!("--root FILE is needed: where the test attestation root is written");
        std::process::exit(2);
    };
    let attestation = attestation_ca();
    if let Err(e) = std::fs::write(&root, &attestation.root_pem) {
        eprintln!("writing {}: {e}", root.display());
        std::process::exit(1);
    }
    trussed::virt::with_platform(trussed::virt::StoreConfig::ram(), |platform| {
        platform.run_client_with_backends(
            "piv",
            dispatch::Dispatch::default(),
            dispatch::BACKENDS,
            |client| {
                let mut card = Card {
                    app: Authenticator::new(client, Options::default()),
                    slots: HashMap::new(),
                    chain: Vec::new(),
                    pending: Vec::new(),
                    attestation,
                    management_default: true,
                    pin_retries: 3,
                };
                serve(&mut card, port, control);
            },
        )
    });
}

/// Plugs the card into vpcd, again and again: after vpcd goes away, or while removed.
fn serve<T: piv_authenticator::Client>(card: &mut Card<T>, port: u16, control: Option<PathBuf>) {
    let removed = control.as_ref().map(|dir| dir.join("removed"));
    let is_removed = |removed: &Option<PathBuf>| removed.as_ref().is_some_and(|p| p.exists());
    // The reader to go into: the one the control directory names, else the one given.
    let reader = || {
        control
            .as_ref()
            .and_then(|dir| std::fs::read_to_string(dir.join("port")).ok())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(port)
    };
    loop {
        if is_removed(&removed) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let port = reader();
        let stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => stream,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // vpcd waits for each answer: no Nagle delay on the small writes.
        let _ = stream.set_nodelay(true);
        eprintln!("virtual-piv: in the reader on port {port}");
        // Pulling the card: a watcher shuts the connection down when the control file appears.
        let done = Arc::new(AtomicBool::new(false));
        let watcher = match (stream.try_clone(), removed.clone()) {
            (Ok(clone), Some(path)) => {
                let done = done.clone();
                Some(std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if path.exists() {
                            let _ = clone.shutdown(Shutdown::Both);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }))
            }
            _ => None,
        };
        let mut connection = vpicc::Connection::from(stream);
        loop {
            if let Err(e) = connection.poll(card) {
                if e.kind() != ErrorKind::UnexpectedEof {
                    eprintln!("virtual-piv: out of the reader: {e}");
                }
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        if let Some(watcher) = watcher {
            let _ = watcher.join();
        }
        card.chain.clear();
        card.pending.clear();
    }
}

impl<T: piv_authenticator::Client> vpicc::VSmartCard for Card<T> {
    fn power_off(&mut self) {
        self.chain.clear();
        self.pending.clear();
    }

    fn reset(&mut self) {
        self.chain.clear();
        self.pending.clear();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        let Some(header) = Header::parse(apdu) else {
            return vec![0x67, 0x00];
        };
        if header.ins == 0xc0 {
            return self.next_part(header.le);
        }
        self.pending.clear();
        if header.cla & 0x10 != 0 {
            self.chain.extend_from_slice(header.data);
            return OK.to_vec();
        }
        let mut data = std::mem::take(&mut self.chain);
        data.extend_from_slice(header.data);
        let (reply, status) = self.command(&header, &data);
        self.pending = reply;
        if status != OK {
            let mut out = std::mem::take(&mut self.pending);
            out.extend_from_slice(&status);
            return out;
        }
        self.next_part(header.le)
    }
}

impl<T: piv_authenticator::Client> Card<T> {
    /// Up to `le` bytes of the pending reply, with 61xx when more is left.
    fn next_part(&mut self, le: usize) -> Vec<u8> {
        let take = le.min(self.pending.len());
        let mut out: Vec<u8> = self.pending.drain(..take).collect();
        match self.pending.len() {
            0 => out.extend_from_slice(&OK),
            rest => out.extend_from_slice(&[0x61, rest.min(255) as u8]),
        }
        out
    }

    fn command(&mut self, h: &Header<'_>, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        match (h.ins, h.p1, h.p2) {
            // SELECT by the short PIV AID, as YubiKey tools send it.
            (0xa4, 0x04, _) if data == SELECT_PREFIX => self.forward(h, &PIV_AID),
            // GET VERSION.
            (0xfd, _, _) => (VERSION.to_vec(), OK),
            // GET METADATA.
            (0xf7, 0x00, slot) => self.metadata(slot),
            // ATTEST.
            (0xf9, slot, _) => self.attest(slot),
            // GET DATA of the attestation certificate (5FFF01).
            (0xcb, 0x3f, 0xff) if data == [0x5c, 0x03, 0x5f, 0xff, 0x01] => {
                let cert = &self.attestation.intermediate_der;
                let inner = [tlv(0x70, cert), tlv(0x71, &[0]), tlv(0xfe, &[])].concat();
                (tlv(0x53, &inner), OK)
            }
            // GENERATE ASYMMETRIC KEY PAIR: what it made is remembered for metadata.
            (0x47, 0x00, slot) => {
                let (reply, status) = self.forward(h, data);
                if status == OK {
                    if let Some(key) = generated(data, &reply) {
                        self.slots.insert(slot, key);
                    }
                }
                (reply, status)
            }
            // IMPORT (YubiKey extension): an imported key, no public key known here.
            (0xfe, algorithm, slot) => {
                let (reply, status) = self.forward(h, data);
                if status == OK {
                    self.slots.insert(
                        slot,
                        SlotKey {
                            algorithm,
                            pin_policy: 1,
                            touch_policy: 1,
                            generated: false,
                            public: Vec::new(),
                        },
                    );
                }
                (reply, status)
            }
            // SET MANAGEMENT KEY.
            (0xff, 0xff, _) => {
                let result = self.forward(h, data);
                if result.1 == OK {
                    self.management_default = false;
                }
                result
            }
            // RESET: every key goes.
            (0xfb, _, _) => {
                let result = self.forward(h, data);
                if result.1 == OK {
                    self.slots.clear();
                    self.management_default = true;
                }
                result
            }
            // VERIFY or CHANGE REFERENCE of the PIN: the attempts left are followed.
            (0x20 | 0x24, 0x00, 0x80) if !data.is_empty() => {
                let (reply, status) = self.forward(h, data);
                match status {
                    OK => self.pin_retries = 3,
                    [0x63, sw2] if sw2 & 0xf0 == 0xc0 => self.pin_retries = sw2 & 0x0f,
                    [0x69, 0x83] => self.pin_retries = 0,
                    _ => {}
                }
                (reply, status)
            }
            // GET DATA of an object written empty (deleted): absent, as on a YubiKey.
            (0xcb, 0x3f, 0xff) => match self.forward(h, data) {
                (reply, OK) if reply == [0x53, 0x00] => (Vec::new(), [0x6a, 0x82]),
                other => other,
            },
            _ => self.forward(h, data),
        }
    }

    /// Hands a whole command to piv-authenticator.
    fn forward(&mut self, h: &Header<'_>, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        let mut apdu = vec![h.cla & !0x10, h.ins, h.p1, h.p2];
        match data.len() {
            0 => {}
            n if n <= 255 => {
                apdu.push(n as u8);
                apdu.extend_from_slice(data);
            }
            n => {
                apdu.extend_from_slice(&[0, (n >> 8) as u8, n as u8]);
                apdu.extend_from_slice(data);
            }
        }
        let command: iso7816::command::CommandView<'_> = match apdu.as_slice().try_into() {
            Ok(command) => command,
            Err(_) => return (Vec::new(), [0x67, 0x00]),
        };
        let mut reply = heapless::Vec::<u8, 8192>::new();
        match self.app.respond(command, reply.as_mut_view()) {
            Ok(()) => (reply.to_vec(), OK),
            Err(status) => (Vec::new(), u16::from(status).to_be_bytes()),
        }
    }

    fn metadata(&self, slot: u8) -> (Vec<u8>, [u8; 2]) {
        let body = match slot {
            // Management key: 3DES, touch never, default or not.
            0x9b => [
                tlv(0x01, &[0x03]),
                tlv(0x02, &[0x00, 0x01]),
                tlv(0x05, &[u8::from(self.management_default)]),
            ]
            .concat(),
            // PIN: attempts in all and left.
            0x80 => [
                tlv(0x01, &[0xff]),
                tlv(0x05, &[0x00]),
                tlv(0x06, &[3, self.pin_retries]),
            ]
            .concat(),
            0x81 => [tlv(0x01, &[0xff]), tlv(0x05, &[0x00])].concat(),
            slot => match self.slots.get(&slot) {
                Some(key) => [
                    tlv(0x01, &[key.algorithm]),
                    tlv(0x02, &[key.pin_policy, key.touch_policy]),
                    tlv(0x03, &[if key.generated { 0x01 } else { 0x02 }]),
                    if key.public.is_empty() {
                        Vec::new()
                    } else {
                        tlv(0x04, &key.public)
                    },
                ]
                .concat(),
                None => return (Vec::new(), NOT_FOUND),
            },
        };
        (body, OK)
    }

    /// A certificate for the key generated in `slot`, signed by the attestation intermediate.
    fn attest(&self, slot: u8) -> (Vec<u8>, [u8; 2]) {
        let Some(key) = self.slots.get(&slot) else {
            return (Vec::new(), NOT_FOUND);
        };
        if !key.generated {
            // A YubiKey attests only keys it generated.
            return (Vec::new(), WRONG_DATA);
        }
        let Some(spki) = spki(key) else {
            return (Vec::new(), WRONG_DATA);
        };
        let Ok(public) = SubjectPublicKeyInfo::from_der(&spki) else {
            return (Vec::new(), WRONG_DATA);
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("YubiKey PIV Attestation {slot:02x}"));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 20);
        let yubico = |arc: u64| vec![1, 3, 6, 1, 4, 1, 41482, 3, arc];
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&yubico(3), VERSION.to_vec()),
            CustomExtension::from_oid_content(&yubico(7), der_integer(SERIAL)),
            CustomExtension::from_oid_content(&yubico(8), vec![key.pin_policy, key.touch_policy]),
            CustomExtension::from_oid_content(&yubico(9), vec![0x01]),
        ];
        match params.signed_by(&public, &self.attestation.issuer) {
            Ok(cert) => (cert.der().to_vec(), OK),
            Err(e) => {
                eprintln!("virtual-piv: attestation certificate: {e}");
                (Vec::new(), [0x6f, 0x00])
            }
        }
    }
}

/// A command APDU's header, data and Le (256 when it carries none, as on a real card).
struct Header<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    le: usize,
}

impl<'a> Header<'a> {
    fn parse(apdu: &'a [u8]) -> Option<Self> {
        let (&[cla, ins, p1, p2], body) = apdu.split_first_chunk::<4>()?;
        let (data, le) = match body {
            [] => (&[][..], 256),
            [0] => (&[][..], 256),
            [le] => (&[][..], usize::from(*le)),
            // Extended lengths.
            [0, hi, lo, rest @ ..] if !rest.is_empty() || (*hi, *lo) != (0, 0) => {
                let n = usize::from(*hi) << 8 | usize::from(*lo);
                if rest.len() >= n {
                    (&rest[..n], 65536)
                } else {
                    (&[][..], if n == 0 { 65536 } else { n })
                }
            }
            [lc, rest @ ..] => {
                let n = usize::from(*lc);
                let data = rest.get(..n)?;
                let le = match rest.get(n) {
                    Some(0) | None => 256,
                    Some(le) => usize::from(*le),
                };
                (data, le)
            }
        };
        Some(Header {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }
}

/// The key a GENERATE command asked for (AC 03 80 01 alg [AA 01 pin] [AB 01 touch]) and its
/// answer (7F49 public key template).
fn generated(command: &[u8], reply: &[u8]) -> Option<SlotKey> {
    let template = tlv_value(command, 0xac)?;
    let algorithm = *tlv_value(template, 0x80)?.first()?;
    let pin_policy = tlv_value(template, 0xaa)
        .and_then(|v| v.first().copied())
        .unwrap_or(1);
    let touch_policy = tlv_value(template, 0xab)
        .and_then(|v| v.first().copied())
        .unwrap_or(1);
    let public = reply
        .strip_prefix(&[0x7f, 0x49])
        .and_then(|rest| read_len(rest).map(|(len, at)| rest[at..at + len].to_vec()))?;
    Some(SlotKey {
        algorithm,
        pin_policy,
        touch_policy,
        generated: true,
        public,
    })
}

/// The SubjectPublicKeyInfo DER of a slot's key.
fn spki(key: &SlotKey) -> Option<Vec<u8>> {
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let (algorithm, bits) = match key.algorithm {
        0x11 | 0x14 => {
            let curve = if key.algorithm == 0x11 { P256 } else { P384 };
            (
                tlv(0x30, &[EC, curve].concat()),
                tlv_value(&key.public, 0x86)?.to_vec(),
            )
        }
        0x06 | 0x07 | 0x05 | 0x16 => {
            let n = der_unsigned(tlv_value(&key.public, 0x81)?);
            let e = der_unsigned(tlv_value(&key.public, 0x82)?);
            (tlv(0x30, RSA), tlv(0x30, &[n, e].concat()))
        }
        _ => return None,
    };
    Some(tlv(
        0x30,
        &[algorithm, tlv(0x03, &[&[0u8][..], &bits].concat())].concat(),
    ))
}

fn attestation_ca() -> Attestation {
    let key_pair = || KeyPair::generate().expect("a P-256 key from ring");
    let ca = |cn: &str, path: Option<u8>| {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(match path {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 30);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
        params
    };
    let root_key = key_pair();
    let root_params = ca("Signet Test PIV Attestation Root", None);
    let root = root_params.self_signed(&root_key).expect("the test root");
    let root_issuer = Issuer::new(root_params, root_key);
    let intermediate_key = key_pair();
    let intermediate_params = ca("Signet Test Yubico PIV Attestation", Some(0));
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root_issuer)
        .expect("the test attestation intermediate");
    Attestation {
        root_pem: root.pem(),
        intermediate_der: intermediate.der().to_vec(),
        issuer: Issuer::new(intermediate_params, intermediate_key),
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut serial));
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

fn read_len(bytes: &[u8]) -> Option<(usize, usize)> {
    match *bytes.first()? {
        n if n < 0x80 => Some((usize::from(n), 1)),
        0x81 => Some((usize::from(*bytes.get(1)?), 2)),
        0x82 => Some((
            usize::from(*bytes.get(1)?) << 8 | usize::from(*bytes.get(2)?),
            3,
        )),
        _ => None,
    }
}

/// The value of the first `tag` among one level of single-byte-tag TLVs.
fn tlv_value(mut bytes: &[u8], tag: u8) -> Option<&[u8]> {
    while let Some((&t, rest)) = bytes.split_first() {
        let (len, at) = read_len(rest)?;
        let value = rest.get(at..at + len)?;
        if t == tag {
            return Some(value);
        }
        bytes = &rest[at + len..];
    }
    None
}

fn der_unsigned(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match magnitude.iter().position(|b| *b != 0) {
        Some(i) => &magnitude[i..],
        None => &[0],
    };
    if trimmed[0] & 0x80 != 0 {
        tlv(0x02, &[&[0u8][..], trimmed].concat())
    } else {
        tlv(0x02, trimmed)
    }
}

fn der_integer(value: u32) -> Vec<u8> {
    der_unsigned(&value.to_be_bytes())
}
