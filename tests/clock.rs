//! Rules that wait for time, run in process on a clock the test moves (`TestClock`) instead of
//! sleeping: token lifetimes, a retired token key version leaving the JWKS, expired revocations
//! pruned, a key's deletion window. A `Service` over a temporary data directory (the embedded
//! SoftHSM2 token and sled), as in `pipeline.rs`; one process per test (nextest), since
//! SoftHSM2 reads its configuration once per process and the clock is the process's.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

mod in_process;

use signet::domain::keys::KeyName;
use signet::domain::tokens::jwt::Inactive;
use signet::domain::tokens::TokenRequest;
use signet::service::{
    Caller, CreateKey, Introspect, IssueToken, ManageKey, ReadJwks, ReadKey, RevokeToken,
    RevokeTokenOp, Service,
};
use signet::store::VersionState;
use signet::support::time::{self, TestClock};
use signet_hsm::KeySpec;

/// This process's clock, installed before anything reads the time.
static CLOCK: LazyLock<Arc<TestClock>> = LazyLock::new(|| {
    let clock = Arc::new(TestClock::default());
    assert!(
        time::install(clock.clone()),
        "something read the time before the test clock was installed"
    );
    clock
});

struct Fixture {
    _dir: tempfile::TempDir,
    service: Service,
    admin: Caller,
}

fn fixture() -> Fixture {
    LazyLock::force(&CLOCK);
    let (dir, service) = in_process::service();
    service.ensure_token_key(&Caller::system()).unwrap();
    Fixture {
        _dir: dir,
        service,
        admin: in_process::client("admin", &["admin"]),
    }
}

fn advance(secs: u64) {
    CLOCK.advance(Duration::from_secs(secs));
}

impl Fixture {
    fn issue(&self, ttl: i64) -> signet::domain::tokens::Issued {
        let request = TokenRequest {
            audience: "a".into(),
            scope: vec![],
            ttl: Some(ttl),
            subject: None,
            bind: false,
        };
        self.service
            .execute(&self.admin, IssueToken(request))
            .wait()
            .unwrap()
    }

    /// Why `token` is inactive, or `None` when it is active.
    fn inactive(&self, token: &str) -> Option<String> {
        let introspect = Introspect {
            token: token.into(),
            audience: None,
        };
        let (result, _) = self
            .service
            .execute(&self.admin, introspect)
            .wait()
            .unwrap();
        result.err().map(|e: Inactive| e.to_string())
    }

    fn jwks_kids(&self) -> Vec<String> {
        let (jwks, _) = self.service.execute(&self.admin, ReadJwks).wait().unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    fn manage(&self, op: ManageKey) {
        self.service.execute(&self.admin, op).wait().unwrap();
    }
}

#[test]
fn a_token_is_expired_once_its_lifetime_has_passed() {
    let f = fixture();
    let token = f.issue(60).token;
    assert_eq!(f.inactive(&token), None);
    advance(30);
    assert_eq!(f.inactive(&token), None);
    advance(31);
    assert_eq!(f.inactive(&token).as_deref(), Some("expired"));
}

/// A disabled token key version stays in the JWKS until its last token has expired, then
/// leaves it, and its tokens fail for want of a key (offline too).
#[test]
fn a_disabled_token_key_version_leaves_the_jwks_once_its_last_token_has_expired() {
    let f = fixture();
    let short = f.issue(60);
    f.manage(ManageKey::Rotate {
        name: "token-signer".into(),
        spec: None,
    });
    let fresh = f.issue(600);
    assert_ne!(short.kid, fresh.kid);
    f.manage(ManageKey::SetState {
        name: "token-signer".into(),
        version: 1,
        enabled: false,
    });
    assert_eq!(f.jwks_kids(), [short.kid.clone(), fresh.kid.clone()]);
    assert_eq!(f.inactive(&short.token), None);
    advance(61);
    assert_eq!(f.jwks_kids(), vec![fresh.kid.clone()]);
    assert_eq!(
        f.inactive(&short.token).as_deref(),
        Some(format!("unknown kid {}", short.kid).as_str())
    );
    assert_eq!(f.inactive(&fresh.token), None);
    // `signet token verify --jwks` with the JWKS published now.
    let (jwks, _) = f.service.execute(&f.admin, ReadJwks).wait().unwrap();
    let file = f._dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let verify = |token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_signet"))
            .args(["token", "verify", token, "--jwks"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = verify(&fresh.token);
    assert!(out.status.success(), "{out:?}");
    let out = verify(&short.token);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("unknown kid"),
        "{text}"
    );
    let key = f
        .service
        .execute(
            &f.admin,
            ReadKey {
                name: "token-signer".into(),
            },
        )
        .wait()
        .unwrap();
    let v1 = key.record.versions.iter().find(|v| v.version == 1).unwrap();
    assert_eq!(v1.state, VersionState::Disabled);
}

/// A revocation is kept while the token could still be presented, and forgotten by the
/// housekeeping once it has expired; a revocation by `jti` alone (expiry unknown) is kept for
/// the longest lifetime a token can have.
#[test]
fn a_revocation_is_forgotten_once_its_token_has_expired() {
    let f = fixture();
    let long = f.issue(600);
    let short = f.issue(60);
    let by_jti = f.issue(60);
    let revoke = |what| {
        let op = RevokeTokenOp::new(&f.service, what).unwrap();
        f.service.execute(&f.admin, op).wait().unwrap();
    };
    revoke(RevokeToken::Token(long.token.clone()));
    revoke(RevokeToken::Token(short.token.clone()));
    revoke(RevokeToken::Jti(by_jti.claims.jti.clone()));
    let store = f.service.store();
    let revoked = |jti: &str| store.token_revoked(jti).unwrap();
    assert_eq!(f.inactive(&short.token).as_deref(), Some("revoked"));
    f.service.housekeeping();
    assert!(revoked(&long.claims.jti) && revoked(&short.claims.jti) && revoked(&by_jti.claims.jti));
    advance(61);
    f.service.housekeeping();
    assert!(
        !revoked(&short.claims.jti),
        "the expired token's revocation should be pruned"
    );
    assert!(revoked(&long.claims.jti) && revoked(&by_jti.claims.jti));
    assert_eq!(store.revoked_tokens().unwrap().len(), 2);
}

/// A key scheduled for deletion is destroyed in the token by the housekeeping once its window
/// has passed, not before.
#[test]
fn a_key_is_destroyed_once_its_deletion_window_has_passed() {
    let f = fixture();
    let create = CreateKey {
        name: KeyName::parse("doomed").unwrap(),
        spec: KeySpec::EcP256,
    };
    f.service.execute(&f.admin, create).wait().unwrap();
    f.manage(ManageKey::ScheduleDeletion {
        name: "doomed".into(),
        days: 1,
    });
    let state = || {
        let key = f
            .service
            .execute(
                &f.admin,
                ReadKey {
                    name: "doomed".into(),
                },
            )
            .wait()
            .unwrap();
        key.record.versions[0].state
    };
    advance(86_400 - 60);
    f.service.housekeeping();
    assert_ne!(state(), VersionState::Destroyed);
    advance(120);
    f.service.housekeeping();
    assert_eq!(state(), VersionState::Destroyed);
}
