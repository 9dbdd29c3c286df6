//! The backend over one card.

use super::config::{PinUse, PivConfig, TouchUse};
use super::error::device;
use super::slots::*;
use std::fmt;
use std::sync::Mutex;

use yubikey::piv::{self, AlgorithmId, ManagementAlgorithmId, SlotId};
use yubikey::{PinPolicy, Serial, TouchPolicy, YubiKey};

use crate::backend::{
    Attestation, Backend, BackendInfo, KeyId, KeyInfo, KeyRequest, KeyRole, Protection,
};
use crate::error::{Error, Fault, Result};
use crate::input::Payload;
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// A backend over one YubiKey's PIV application.
pub struct PivBackend {
    config: PivConfig,
    card: Mutex<Option<YubiKey>>,
    serial: u32,
    version: String,
    /// Set once the card refused the configured PIN: it is never offered again (each try
    /// would bring the card closer to locking), until Signet is restarted with the right one.
    pin_refused: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for PivBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivBackend")
            .field("serial", &self.serial)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PivBackend {
    /// Opens the card (by serial when configured), checks the PIN and the management key.
    pub fn open(config: PivConfig) -> Result<Self> {
        config.management_key.mgm()?;
        let mut yk = Self::connect(&config)?;
        let serial = yk.serial().0;
        let version = yk.version().to_string();
        Self::login(&config, &mut yk)?;
        yk.authenticate(config.management_key.mgm()?).map_err(|_| {
            Error::Wrapper(
                "the card refused the PIV management key (check management_key_file)".into(),
            )
        })?;
        Ok(PivBackend {
            config,
            card: Mutex::new(Some(yk)),
            serial,
            version,
            pin_refused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Opens the card; right after a card (re)appears PC/SC may not list it yet, so for up to
    /// about five seconds.
    fn connect(config: &PivConfig) -> Result<YubiKey> {
        let mut delay = std::time::Duration::from_millis(100);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let opened = match config.serial {
                Some(serial) => YubiKey::open_by_serial(Serial(serial)),
                None => YubiKey::open(),
            };
            match opened {
                Ok(yk) => return Ok(yk),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "opening the YubiKey; trying again");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                Err(e) => return Err(device("open", e)),
            }
        }
    }

    /// Verifies the PIN once; a refusal is reported with the retries left, never retried.
    fn login(config: &PivConfig, yk: &mut YubiKey) -> Result<()> {
        yk.verify_pin(config.pin.expose().as_bytes())
            .map_err(|e| device("VERIFY", e))
    }

    /// Verifies the configured PIN, unless the card refused it before: then it is not offered
    /// again.
    fn verify_pin(&self, yk: &mut YubiKey) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.pin_refused.load(Ordering::SeqCst) {
            return Err(Error::Wrapper(
                "the card refused the configured PIN earlier; Signet does not offer it again (restart with the right PIN)".into(),
            ));
        }
        let verified = Self::login(&self.config, yk);
        if let Err(Error::PinIncorrect { .. } | Error::PinLocked) = &verified {
            self.pin_refused.store(true, Ordering::SeqCst);
            tracing::error!("the YubiKey refused the configured PIN; it will not be offered again");
        }
        verified
    }

    /// Runs `op` on the card, opening it again once if it was pulled or reset.
    fn with_card<T>(
        &self,
        needs_management: bool,
        op: impl Fn(&mut YubiKey) -> Result<T>,
    ) -> Result<T> {
        let mut card = self.card.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if card.is_none() {
                let mut yk = Self::connect(&self.config)?;
                if yk.serial().0 != self.serial {
                    return Err(Error::TokenNotFound(format!(
                        "no YubiKey with serial {} found (another card, {}, is in the reader)",
                        self.serial,
                        yk.serial().0
                    )));
                }
                self.verify_pin(&mut yk)?;
                *card = Some(yk);
            }
            let Some(yk) = card.as_mut() else { continue };
            if self.config.pin_use == PinUse::Always {
                self.verify_pin(yk)?;
            }
            let result = if needs_management {
                yk.authenticate(self.config.management_key.mgm()?)
                    .map_err(|e| device("AUTHENTICATE", e))
                    .and_then(|()| op(yk))
            } else {
                op(yk)
            };
            match result {
                Err(e) if e.fault() == Some(Fault::SessionLost) && attempt == 0 => {
                    tracing::warn!(error = %e, "the YubiKey went away; opening it again");
                    *card = None;
                }
                other => return other,
            }
        }
        Err(Error::TokenNotFound("no YubiKey found".into()))
    }

    fn slot_for(&self, role: KeyRole, yk: &mut YubiKey) -> Result<u8> {
        let slots = self.config.slots;
        Ok(match role {
            KeyRole::RootCa => slots.root_ca,
            KeyRole::IntermediateCa => slots.intermediate_ca,
            KeyRole::ServerTls => slots.server_tls,
            KeyRole::Audit => slots.audit,
            _ => {
                for slot in RETIRED {
                    if slot_label(yk, slot)?.is_none() {
                        return Ok(slot);
                    }
                }
                return Err(Error::Full(
                    "every retired PIV slot (82 to 95) holds a key; delete keys to make room"
                        .into(),
                ));
            }
        })
    }

    /// The slot's key, from its metadata; `None` when the slot is empty.
    fn slot_key(yk: &mut YubiKey, slot: u8) -> Result<Option<(KeySpec, PublicKey, bool)>> {
        let metadata = match piv::metadata(yk, slot_id(slot)?) {
            Ok(m) => m,
            Err(yubikey::Error::NotFound | yubikey::Error::GenericError) => return Ok(None),
            Err(e) => return Err(device("GET METADATA", e)),
        };
        let ManagementAlgorithmId::Asymmetric(algorithm) = metadata.algorithm else {
            return Ok(None);
        };
        let Some(spec) = spec_of(algorithm) else {
            return Ok(None);
        };
        let Some(spki) = metadata.public else {
            return Err(Error::Malformed(format!(
                "slot {slot:02x} reports no public key"
            )));
        };
        let public = public_key(spec, &spki)?;
        let generated = matches!(metadata.origin, Some(piv::Origin::Generated));
        Ok(Some((spec, public, generated)))
    }

    /// The key an id names, checked against what the slot holds now.
    fn resolve(yk: &mut YubiKey, id: &KeyId) -> Result<Resolved> {
        let not_found = || Error::KeyNotFound(id.to_hex());
        let (&slot, _) = id.0.split_first().ok_or_else(not_found)?;
        if id.0.len() != 17 {
            return Err(not_found());
        }
        let (spec, public, generated) = Self::slot_key(yk, slot)?.ok_or_else(not_found)?;
        if key_id(slot, &public) != *id {
            return Err(not_found());
        }
        let label = slot_label(yk, slot)?.ok_or_else(not_found)?;
        Ok(Resolved {
            slot,
            spec,
            public,
            generated,
            label,
        })
    }

    fn pin_policy(&self) -> PinPolicy {
        match self.config.pin_use {
            PinUse::Once => PinPolicy::Once,
            PinUse::Always => PinPolicy::Always,
        }
    }

    fn touch_policy(&self) -> TouchPolicy {
        match self.config.touch {
            TouchUse::Never => TouchPolicy::Never,
            TouchUse::Always => TouchPolicy::Always,
            TouchUse::Cached => TouchPolicy::Cached,
        }
    }

    /// Signs `input` (already padded or a digest) with the slot's key. The digital-signature
    /// slot (9c) wants the PIN just before each use on cards that keep the PIV default (PIN
    /// always) whatever the key's policy: it is verified again there.
    fn raw_sign(&self, yk: &mut YubiKey, slot: u8, spec: KeySpec, input: &[u8]) -> Result<Vec<u8>> {
        let algorithm = algorithm_id(spec).ok_or_else(|| Error::Unsupported(spec.to_string()))?;
        if slot == 0x9c && self.config.pin_use == PinUse::Once {
            self.verify_pin(yk)?;
        }
        piv::sign_data(yk, input, algorithm, slot_id(slot)?)
            .map(|b| b.to_vec())
            .map_err(|e| device("GENERAL AUTHENTICATE", e))
    }

    /// The card's serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// PIN attempts left, from the PIN's metadata (firmware 5.3 and later).
    fn pin_retries(&self) -> Result<Option<u8>> {
        self.with_card(false, |yk| {
            let pin = SlotId::try_from(0x80u8).map_err(|e| device("GET METADATA", e))?;
            match piv::metadata(yk, pin) {
                Ok(m) => Ok(m.retries.map(|r| r.remaining_count)),
                Err(yubikey::Error::NotSupported) => Ok(None),
                Err(e) => Err(device("GET METADATA", e)),
            }
        })
    }

    fn generate_in(&self, yk: &mut YubiKey, slot: u8, request: &KeyRequest) -> Result<KeyInfo> {
        let algorithm = algorithm_id(request.spec).ok_or_else(|| Error::SpecUnsupported {
            spec: request.spec,
            supported: SPECS.to_vec(),
        })?;
        let spki = piv::generate(
            yk,
            slot_id(slot)?,
            algorithm,
            self.pin_policy(),
            self.touch_policy(),
        )
        .map_err(|e| device("GENERATE ASYMMETRIC", e))?;
        let public = public_key(request.spec, &spki)?;
        if self.config.pin_use == PinUse::Always {
            self.verify_pin(yk)?;
        }
        // Signed with the spec's default algorithm (ES256, ES384 or RS256), as rcgen expects.
        let algorithm = request.spec.default_algorithm();
        let certificate = super::cert::self_signed(&request.label, &public, |tbs| {
            let hash = algorithm
                .hash()
                .ok_or_else(|| Error::Unsupported(format!("{algorithm} on a PIV card")))?;
            let digest = hash.digest(tbs);
            self.raw_sign(yk, slot, request.spec, &card_input(algorithm, &digest)?)
        })?;
        let certificate = yubikey::certificate::Certificate::from_bytes(certificate)
            .map_err(|e| device("certificate", e))?;
        certificate
            .write(
                yk,
                slot_id(slot)?,
                yubikey::certificate::CertInfo::Uncompressed,
            )
            .map_err(|e| device("PUT DATA (certificate)", e))?;
        Ok(KeyInfo {
            id: key_id(slot, &public),
            label: request.label.clone(),
            spec: request.spec,
        })
    }
}

/// A key an id names, as the card holds it now.
struct Resolved {
    slot: u8,
    spec: KeySpec,
    public: PublicKey,
    generated: bool,
    label: String,
}

impl Backend for PivBackend {
    fn info(&self) -> Result<BackendInfo> {
        let retries = self.pin_retries()?;
        Ok(BackendInfo {
            kind: "yubikey",
            library: format!("yubikey crate (PC/SC), PIV {}", self.version),
            token_label: format!("YubiKey {}", self.serial),
            token_model: format!("YubiKey PIV {} serial {}", self.version, self.serial),
            specs: SPECS.to_vec(),
            algorithms: ALGORITHMS.to_vec(),
            sessions_open: 1,
            sessions_max: 1,
            details: vec![
                ("serial".into(), self.serial.to_string()),
                ("firmware".into(), self.version.clone()),
                (
                    "pin_retries".into(),
                    retries.map_or("unknown".into(), |n| n.to_string()),
                ),
            ],
        })
    }

    fn generate(&self, request: &KeyRequest) -> Result<KeyInfo> {
        if request.label.is_empty() {
            return Err(Error::Wrapper("a key needs a label".into()));
        }
        if algorithm_id(request.spec).is_none() {
            return Err(Error::SpecUnsupported {
                spec: request.spec,
                supported: SPECS.to_vec(),
            });
        }
        self.with_card(true, |yk| {
            let slot = self.slot_for(request.role, yk)?;
            self.generate_in(yk, slot, request)
        })
    }

    fn find(&self, id: &KeyId) -> Result<KeyInfo> {
        self.with_card(false, |yk| {
            let key = Self::resolve(yk, id)?;
            Ok(KeyInfo {
                id: id.clone(),
                label: key.label,
                spec: key.spec,
            })
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>> {
        self.with_card(false, |yk| {
            let slots = self.config.slots;
            let mut keys = Vec::new();
            for slot in [
                slots.root_ca,
                slots.intermediate_ca,
                slots.server_tls,
                slots.audit,
            ]
            .into_iter()
            .chain(RETIRED)
            {
                let Some(label) = slot_label(yk, slot)? else {
                    continue;
                };
                if let Some((spec, public, _)) = Self::slot_key(yk, slot)? {
                    keys.push(KeyInfo {
                        id: key_id(slot, &public),
                        label,
                        spec,
                    });
                }
            }
            Ok(keys)
        })
    }

    fn public_key(&self, id: &KeyId) -> Result<PublicKey> {
        self.with_card(false, |yk| Self::resolve(yk, id).map(|key| key.public))
    }

    fn sign_payload(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        payload: Payload<'_>,
    ) -> Result<Vec<u8>> {
        let Payload::Digest(digest) = payload else {
            return Err(Error::Unsupported(
                "the PIV card signs digests; the host hashes".into(),
            ));
        };
        if !ALGORITHMS.contains(&algorithm) {
            return Err(Error::AlgorithmUnsupported {
                algorithm,
                supported: ALGORITHMS.to_vec(),
            });
        }
        self.with_card(false, |yk| {
            let Resolved { slot, spec, .. } = Self::resolve(yk, id)?;
            if !spec.allows(algorithm) {
                return Err(Error::AlgorithmMismatch { algorithm, spec });
            }
            let signature = self.raw_sign(yk, slot, spec, &card_input(algorithm, digest)?)?;
            match algorithm {
                SignatureAlgorithm::Rs256 => Ok(signature),
                _ => {
                    let field = if spec == KeySpec::EcP384 { 48 } else { 32 };
                    crate::der::ecdsa_der_to_raw(&signature, field)
                }
            }
        })
    }

    fn destroy(&self, id: &KeyId) -> Result<()> {
        self.with_card(true, |yk| {
            let slot = Self::resolve(yk, id)?.slot;
            // No key delete before firmware 5.7: a fresh key (P-256, quick to make) takes the
            // old one's place for good, then the certificate goes, which frees the slot.
            piv::generate(
                yk,
                slot_id(slot)?,
                AlgorithmId::EccP256,
                PinPolicy::Always,
                TouchPolicy::Never,
            )
            .map_err(|e| device("GENERATE ASYMMETRIC (overwrite)", e))?;
            yubikey::certificate::Certificate::delete(yk, slot_id(slot)?)
                .map_err(|e| device("PUT DATA (delete certificate)", e))?;
            Ok(())
        })
    }

    /// The slot's attestation certificate (made by the card for a key it generated) and the
    /// card's attestation intermediate (slot f9), both DER.
    fn attest(&self, id: &KeyId) -> Result<Attestation> {
        self.with_card(false, |yk| {
            let slot = Self::resolve(yk, id)?.slot;
            let leaf = piv::attest(yk, slot_id(slot)?)
                .map_err(|e| device("ATTEST", e))?
                .to_vec();
            let intermediate = yubikey::certificate::Certificate::read(yk, SlotId::Attestation)
                .map_err(|e| device("GET DATA (attestation certificate)", e))?;
            let intermediate = der::Encode::to_der(&intermediate.cert)
                .map_err(|_| Error::Malformed("the f9 certificate does not encode".into()))?;
            Ok(Attestation {
                certificate: leaf,
                intermediate,
            })
        })
    }

    fn protection(&self, id: &KeyId) -> Result<Protection> {
        self.with_card(false, |yk| {
            let generated = Self::resolve(yk, id)?.generated;
            // PIV private keys can never be read out; use needs the PIN (policy once/always).
            Ok(Protection {
                sensitive: Some(true),
                always_sensitive: Some(generated),
                extractable: Some(false),
                never_extractable: Some(generated),
                persistent: Some(true),
                needs_login: Some(true),
                generated_on_device: Some(generated),
            })
        })
    }
}
