//! Signatures per second on a PIV card (the virtual one in tests, or a real YubiKey):
//! `cargo run --release -p signet-hsm --example piv_rate -- [SECONDS]`, with the card's PIN in
//! `SIGNET_PIV_PIN` (default 123456) and its management key in `SIGNET_PIV_MGM` (default: the
//! factory key). Makes one P-256 key in a retired slot, signs for SECONDS (default 5) on one
//! thread, prints the rate and this process's CPU per signature, then destroys the key.

use std::time::{Duration, Instant};

use signet_hsm::{
    Backend, EcdsaFormat, KeyRequest, KeySpec, ManagementKey, Pin, PinUse, PivBackend, PivConfig,
    PivSlots, SignInput, SignatureAlgorithm, TouchUse,
};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let pin = std::env::var("SIGNET_PIV_PIN").unwrap_or_else(|_| "123456".into());
    let mgm = std::env::var("SIGNET_PIV_MGM")
        .unwrap_or_else(|_| "010203040506070801020304050607080102030405060708".into());
    let hsm = PivBackend::open(PivConfig {
        serial: None,
        pin: Pin::new(pin),
        management_key: ManagementKey::from_hex(&mgm)?,
        slots: PivSlots::default(),
        pin_use: PinUse::Once,
        touch: TouchUse::Never,
    })?;
    let key = hsm.generate(&KeyRequest::named("piv-rate", KeySpec::EcP256))?;
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        signet_hsm::sign(
            &hsm,
            &key.id,
            SignatureAlgorithm::Es256,
            SignInput::Message(b"rate"),
            EcdsaFormat::Der,
        )?;
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    println!(
        "ES256 on the PIV card: {n} signatures in {elapsed:.1} s = {:.1}/s, mean {:.2} ms per signature, client CPU {:.0} us/signature",
        n as f64 / elapsed,
        elapsed * 1000.0 / n as f64,
        cpu * 1e6 / n as f64
    );
    hsm.destroy(&key.id)?;
    Ok(())
}
