//! PKCS#11 URIs (RFC 7512) naming a token and its module, as OpenSSL, p11-kit and GnuTLS users
//! write them: `pkcs11:token=signet;serial=0cdcca23?module-path=/usr/lib/softhsm/libsofthsm2.so`.
//!
//! Signet names its own keys, so a URI here selects a token: `token`, `serial`,
//! `manufacturer`, `model` and `slot-id` in the path (every one given must match), and
//! `module-path`, `module-name` and `pin-source` in the query. Object attributes (`object`,
//! `id`, `type`) and `pin-value` (a secret in a configuration file) are refused; vendor
//! attributes (`x-…`) are ignored, as the RFC asks; anything else is refused by name.

use std::fmt;
use std::path::PathBuf;

/// A parsed token URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label (`token`).
    pub token: Option<String>,
    /// Token serial number (`serial`).
    pub serial: Option<String>,
    /// Token manufacturer (`manufacturer`).
    pub manufacturer: Option<String>,
    /// Token model (`model`).
    pub model: Option<String>,
    /// Slot id (`slot-id`).
    pub slot_id: Option<u64>,
    /// The module's path (`module-path`).
    pub module_path: Option<PathBuf>,
    /// The module's name (`module-name`), found in the system's PKCS#11 directories.
    pub module_name: Option<String>,
    /// Where the PIN is (`pin-source`): a file.
    pub pin_source: Option<PathBuf>,
}

/// Why a URI cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PKCS#11 URI: {0}")]
pub struct UriError(String);

fn err<T>(m: impl Into<String>) -> Result<T, UriError> {
    Err(UriError(m.into()))
}

/// RFC 3986 percent-decoding, to UTF-8.
fn decode(raw: &str, name: &str) -> Result<String, UriError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => out.push(b),
                    None => return err(format!("a bad %-escape in the value of {name}")),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| UriError(format!("the value of {name} is not UTF-8")))
}

/// Percent-encodes what RFC 7512 does not allow as is in a path value (or, with `query`, a
/// query value, where `/` and `?` may stay).
fn encode(value: &str, query: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._~:[]@!$'()*+,".contains(&b)
            || (query && b"/?|".contains(&b));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Pkcs11Uri {
    /// Parses a token URI.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let text = text.trim();
        let Some(rest) = text
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &text[7..])
        else {
            return err("it must start with pkcs11:");
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        // One `name=value` attribute of the path or the query: its lower-cased name (each
        // name at most once in the whole URI) and its decoded value.
        let mut seen: Vec<String> = Vec::new();
        let mut attribute = |part: &str| -> Result<(String, String), UriError> {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| UriError(format!("{part:?} is not name=value")))?;
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return err(format!("{name} appears twice"));
            }
            seen.push(name.clone());
            let value = decode(raw, &name)?;
            Ok((name, value))
        };
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = attribute(part)?;
            match name.as_str() {
                "token" => uri.token = Some(value),
                "serial" => uri.serial = Some(value),
                "manufacturer" => uri.manufacturer = Some(value),
                "model" => uri.model = Some(value),
                "slot-id" => {
                    uri.slot_id = Some(value.parse().map_err(|_| {
                        UriError(format!("slot-id {value:?} is not a number"))
                    })?)
                }
                "object" | "id" | "type" => {
                    return err(format!(
                        "{name} names a key object; Signet names its own keys: give a token URI"
                    ))
                }
                n if n.starts_with("x-") => {}
                other => {
                    return err(format!(
                        "{other} is not supported here (use token, serial, manufacturer, model or slot-id)"
                    ))
                }
            }
        }
        for part in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (name, value) = attribute(part)?;
            match name.as_str() {
                "module-path" => uri.module_path = Some(PathBuf::from(value)),
                "module-name" => {
                    if value.contains('/') {
                        return err("module-name is a name, not a path (use module-path)");
                    }
                    uri.module_name = Some(value)
                }
                "pin-source" => {
                    let path = value.strip_prefix("file:").unwrap_or(&value);
                    let path = path.strip_prefix("//").unwrap_or(path);
                    if value.starts_with('|') || !path.starts_with('/') {
                        return err(
                            "pin-source must be a file (file:/path or /path); commands are not run",
                        );
                    }
                    uri.pin_source = Some(PathBuf::from(path))
                }
                "pin-value" => return err(
                    "pin-value would put the PIN in the configuration; use pin-source=file:/path",
                ),
                n if n.starts_with("x-") => {}
                other => {
                    return err(format!(
                        "{other} is not supported here (use module-path, module-name or pin-source)"
                    ))
                }
            }
        }
        if uri.token.is_none() && uri.serial.is_none() && uri.slot_id.is_none() {
            return err("it names no token: give token=, serial= or slot-id=");
        }
        Ok(uri)
    }

    /// The module file: `module-path`, or `module-name` found where Debian and p11-kit keep
    /// modules. `None` when the URI names none.
    pub fn module(&self) -> Option<PathBuf> {
        if let Some(path) = &self.module_path {
            return Some(path.clone());
        }
        let name = self.module_name.as_ref()?;
        // As p11-kit resolves a name: its module registry first (`softhsm2` ->
        // /usr/share/p11-kit/modules/softhsm2.module -> `module: .../libsofthsm2.so`); a
        // relative file there is looked for where modules are kept, as a bare name is.
        let file = match registered_module(name) {
            Some(path) if path.is_absolute() => return Some(path),
            Some(relative) => relative.to_string_lossy().into_owned(),
            None if name.ends_with(".so") => name.clone(),
            None => format!("{name}.so"),
        };
        let dirs = [
            "/usr/lib/x86_64-linux-gnu/pkcs11",
            "/usr/lib/aarch64-linux-gnu/pkcs11",
            "/usr/lib/pkcs11",
            "/usr/lib64/pkcs11",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib",
            "/usr/lib/softhsm",
        ];
        dirs.iter()
            .map(|d| PathBuf::from(d).join(&file))
            .find(|p| p.exists())
            .or_else(|| Some(PathBuf::from(file)))
    }

    /// Whether a token matches every attribute the URI gives.
    pub fn matches(
        &self,
        slot_id: u64,
        label: &str,
        serial: &str,
        manufacturer: &str,
        model: &str,
    ) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.slot_id.is_none_or(|s| s == slot_id)
            && eq(&self.token, label)
            && eq(&self.serial, serial)
            && eq(&self.manufacturer, manufacturer)
            && eq(&self.model, model)
    }

    /// The URI of a token, with every identifying attribute (as p11tool prints them).
    pub fn for_token(label: &str, serial: &str, manufacturer: &str, model: &str) -> String {
        Pkcs11Uri {
            token: Some(label.into()),
            serial: Some(serial.into()),
            manufacturer: Some(manufacturer.into()),
            model: Some(model.into()),
            ..Default::default()
        }
        .to_string()
    }
}

/// The `module:` line p11-kit's registry holds for `name` (`/etc/pkcs11/modules/NAME.module`,
/// then `/usr/share/p11-kit/modules/NAME.module`): an absolute path that exists, or a file
/// name relative to the module directories.
fn registered_module(name: &str) -> Option<PathBuf> {
    if name.contains('/') || name.ends_with(".so") {
        return None;
    }
    ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"]
        .iter()
        .filter_map(|dir| {
            std::fs::read_to_string(PathBuf::from(dir).join(format!("{name}.module"))).ok()
        })
        .find_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("module:"))
                .map(|m| PathBuf::from(m.trim()))
                .find(|m| m.is_relative() || m.exists())
        })
}

impl fmt::Display for Pkcs11Uri {
    /// The canonical form; a PIN source is shown (it is a path, not a PIN).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        for (name, value) in [
            ("model", &self.model),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("token", &self.token),
        ] {
            if let Some(v) = value {
                path.push(format!("{name}={}", encode(v, false)));
            }
        }
        if let Some(s) = self.slot_id {
            path.push(format!("slot-id={s}"));
        }
        let mut query = Vec::new();
        if let Some(p) = &self.module_path {
            query.push(format!(
                "module-path={}",
                encode(&p.display().to_string(), true)
            ));
        }
        if let Some(n) = &self.module_name {
            query.push(format!("module-name={}", encode(n, true)));
        }
        if let Some(p) = &self.pin_source {
            query.push(format!(
                "pin-source=file:{}",
                encode(&p.display().to_string(), true)
            ));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `module-name=softhsm2` finds the file p11-kit's registry names (Debian's softhsm2
    /// package installs `/usr/share/p11-kit/modules/softhsm2.module`), not a guessed one.
    #[test]
    fn a_module_name_resolves_through_the_p11_kit_registry() {
        let registry = std::path::Path::new("/usr/share/p11-kit/modules/softhsm2.module");
        let text = std::fs::read_to_string(registry).expect("softhsm2's p11-kit module file");
        let named = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("module:"))
            .map(|m| PathBuf::from(m.trim()))
            .unwrap();
        let uri = Pkcs11Uri::parse("pkcs11:token=x?module-name=softhsm2").unwrap();
        assert_eq!(uri.module(), Some(named.clone()));
        assert!(named.exists(), "{}", named.display());
    }

    #[test]
    fn the_rfc_and_p11tool_forms_parse() {
        // As p11tool --list-tokens prints it.
        let uri = Pkcs11Uri::parse(
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=0cdcca2381104f7a;token=signet",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("signet"));
        assert_eq!(uri.model.as_deref(), Some("SoftHSM v2"));
        assert!(uri.matches(
            7,
            "signet",
            "0cdcca2381104f7a",
            "SoftHSM project",
            "SoftHSM v2"
        ));
        assert!(!uri.matches(7, "signet", "other", "SoftHSM project", "SoftHSM v2"));
        // RFC 7512 section 3.3 style, with a query.
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?module-path=/usr/lib/libsofthsm2.so&pin-source=file:/etc/token.pin",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("Software PKCS#11 softtoken"));
        assert_eq!(uri.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(
            uri.module().unwrap(),
            PathBuf::from("/usr/lib/libsofthsm2.so")
        );
        assert_eq!(uri.pin_source.unwrap(), PathBuf::from("/etc/token.pin"));
        let uri = Pkcs11Uri::parse("PKCS11:slot-id=3;x-vendor=1").unwrap();
        assert_eq!(uri.slot_id, Some(3));
        // Round trip.
        let text = Pkcs11Uri::for_token("my token;1", "42", "ACME", "HSM 9");
        let back = Pkcs11Uri::parse(&text).unwrap();
        assert_eq!(back.token.as_deref(), Some("my token;1"));
        assert_eq!(back.to_string(), text);
    }

    #[test]
    fn unusable_uris_are_refused_with_the_reason() {
        for (text, why) in [
            ("token=signet", "must start with pkcs11:"),
            ("pkcs11:object=k;token=t", "names a key object"),
            ("pkcs11:token=t?pin-value=1234", "would put the PIN"),
            (
                "pkcs11:token=t?pin-source=|/bin/echo",
                "commands are not run",
            ),
            ("pkcs11:token=t;token=u", "appears twice"),
            ("pkcs11:token=a%zz", "bad %-escape"),
            ("pkcs11:slot-id=one", "not a number"),
            ("pkcs11:library-version=1", "not supported"),
            ("pkcs11:model=x", "names no token"),
        ] {
            let e = Pkcs11Uri::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
