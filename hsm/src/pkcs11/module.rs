//! Loading a PKCS#11 module, finding its token, and initialising a fresh token.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;

use super::error::from_cryptoki;
use super::TokenSelector;
use crate::error::{Error, Result};
use crate::pin::Pin;

/// Loads a module and initialises it, tolerating another handle having done so already.
pub(crate) fn load(path: &Path) -> Result<Pkcs11> {
    if !path.is_file() {
        return Err(Error::ModuleLoad {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(path).map_err(|e| Error::ModuleLoad {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(from_cryptoki(e)),
    }
}

/// The slot holding the selected token, and the token's label: the module at `path` (loaded
/// as `ctx`) lists its slots with a token ([`super::slots`], never cryptoki's unbounded
/// listing), and `ctx` reads each one's token.
pub(crate) fn find_slot(
    ctx: &Pkcs11,
    path: &Path,
    token: &TokenSelector,
) -> Result<(Slot, String)> {
    let mut present = Vec::new();
    for slot in super::slots::list(path)? {
        let info = ctx.get_token_info(slot).map_err(from_cryptoki)?;
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end();
        let found = match token {
            TokenSelector::Label(wanted) => label == wanted,
            TokenSelector::Slot(id) => slot.id() == *id,
            TokenSelector::Serial(serial) => info.serial_number().trim_end() == serial,
            TokenSelector::LabelAndSerial(wanted, serial) => {
                label == wanted && info.serial_number().trim_end() == serial
            }
            TokenSelector::Uri(uri) => uri.matches(
                slot.id(),
                label,
                info.serial_number().trim_end(),
                info.manufacturer_id().trim_end(),
                info.model().trim_end(),
            ),
        };
        if found {
            return Ok((slot, label.to_string()));
        }
        present.push(format!(
            "{label:?} (slot {}, serial {})",
            slot.id(),
            info.serial_number().trim_end()
        ));
    }
    // Say what the module does have: the usual mistake is a label spelt differently.
    let have = if present.is_empty() {
        "the module has no initialised token".to_string()
    } else {
        format!("the module has {}", present.join(", "))
    };
    Err(Error::TokenNotFound(format!(
        "no PKCS#11 token {token} found; {have}"
    )))
}

/// Initialises a fresh token in the first slot with an uninitialised one, and sets its user PIN.
/// This is what `softhsm2-util --init-token --free` does, through the PKCS#11 ABI, so PINs never
/// appear on a command line.
pub fn init_token(module: &Path, label: &str, so_pin: &Pin, user_pin: &Pin) -> Result<()> {
    let ctx = load(module)?;
    if find_slot(&ctx, module, &TokenSelector::Label(label.to_string())).is_ok() {
        return Err(Error::KeyExists(format!("token {label}")));
    }
    let mut free = None;
    for slot in super::slots::list(module)? {
        if !ctx
            .get_token_info(slot)
            .map_err(from_cryptoki)?
            .token_initialized()
        {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or_else(|| {
        Error::TokenNotFound("no PKCS#11 slot with a free (uninitialised) token found".into())
    })?;
    ctx.init_token(slot, &super::auth_pin(so_pin), label)
        .map_err(from_cryptoki)?;
    // SoftHSM2 moves a newly initialised token to a new slot id: look it up again.
    let (slot, _) = find_slot(&ctx, module, &TokenSelector::Label(label.to_string()))?;
    let session = ctx.open_rw_session(slot).map_err(from_cryptoki)?;
    session
        .login(UserType::So, Some(&super::auth_pin(so_pin)))
        .map_err(from_cryptoki)?;
    session
        .init_pin(&super::auth_pin(user_pin))
        .map_err(from_cryptoki)?;
    session.logout().map_err(from_cryptoki)?;
    Ok(())
}
