//! The PostgreSQL store on a real PostgreSQL server (`scripts/postgres.sh`, which
//! `scripts/test.sh` starts): the same contract as sled's, with two store objects standing for
//! two nodes, and one gap-free audit chain from two journals appending at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use signet::config::PostgresSettings;
use signet::store::postgres::{Db, PgJournal, PgStore};
use signet::store::{
    CertKind, CertRecord, CertStatus, CertStore, Event, Journal, KeyRecord, KeyStore, KeyVersion,
    Outcome, PrincipalStore, RevokedToken, Store, TokenStore, VersionState,
};
use signet_hsm::{KeyId, KeySpec};

/// A fresh database on the test server, and settings that reach it.
fn database(name: &str) -> PostgresSettings {
    let url = std::env::var("SIGNET_PG_URL").expect(
        "SIGNET_PG_URL is not set: start PostgreSQL with `eval \"$(scripts/postgres.sh start)\"` (scripts/test.sh does)",
    );
    let password_file = PathBuf::from(std::env::var("SIGNET_PG_PASSWORD_FILE").unwrap());
    let db = format!("{name}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        common::pg::psql(&url, &password_file, &sql);
    }
    PostgresSettings {
        url: common::pg::with_database(&url, &db),
        password_file: Some(password_file),
        ..PostgresSettings::default()
    }
}

/// An active client certificate's record that never expires.
fn active_client_cert(serial: &str, subject: &str, der: Vec<u8>) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        subject: subject.into(),
        sans: Vec::new(),
        profile: CertKind::Client,
        not_before: 1,
        not_after: i64::MAX,
        status: CertStatus::Active,
        revoked_at: None,
        reason: None,
        issued_to: None,
        der,
    }
}

fn record(name: &str) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        spec: KeySpec::EcP256,
        created: 1,
        primary: 1,
        versions: vec![KeyVersion {
            version: 1,
            key_id: KeyId(vec![1]),
            label: "l".into(),
            created: 1,
            state: VersionState::Enabled,
            origin: Default::default(),
            attestation: None,
            spec: None,
            token_algorithm: None,
        }],
        deletion: None,
    }
}

#[test]
fn the_store_contract_holds_across_two_nodes() {
    let settings = database("contract");
    let a = Arc::new(PgStore::open(&settings).unwrap());
    // A second node on the same database: migrations already applied, applied again as no-ops.
    let b = Arc::new(PgStore::open(&settings).unwrap());
    assert_eq!(a.engine(), "postgres");
    a.insert_key(&record("k")).unwrap();
    let conflict = b.insert_key(&record("k")).unwrap_err().to_string();
    assert!(conflict.contains("already exists"), "{conflict}");
    assert_eq!(b.key("k").unwrap().unwrap().name, "k");
    // Concurrent read-modify-writes from both nodes all land: none is lost to a race.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                for _ in 0..25 {
                    store
                        .update_key("k", &mut |r| {
                            r.primary += 1;
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(a.key("k").unwrap().unwrap().primary, 201);
    // A key read ahead with the caller's records serves the request's first read of that key
    // only: a change another node makes afterwards is what the next read sees.
    let ((), _) = signet::store::prefetch::scope(false, || {
        let (cert, _) = b.caller_records("00ff", "svc", Some("k")).unwrap();
        assert!(cert.is_none());
        a.update_key("k", &mut |r| {
            r.primary = 7;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            b.key("k").unwrap().unwrap().primary,
            201,
            "not the one read ahead"
        );
        assert_eq!(b.key("k").unwrap().unwrap().primary, 7, "served twice");
        b.caller_records("00ff", "svc", Some("nothing")).unwrap();
        assert!(b.key("nothing").unwrap().is_none());
    });
    let missing = a.update_key("missing", &mut |_| Ok(())).unwrap_err();
    assert!(missing.to_string().contains("no key named"), "{missing}");
    assert!(b.remove_key("k").unwrap());
    assert!(a.key("k").unwrap().is_none());
    assert!(!a.remove_key("k").unwrap());

    assert_eq!(a.next_crl_number().unwrap(), 1);
    assert_eq!(b.next_crl_number().unwrap(), 2);
    a.note_token_expiry(1, 50).unwrap();
    b.note_token_expiry(1, 40).unwrap();
    assert_eq!(a.token_expiry(1).unwrap(), 50);
    assert_eq!(a.token_expiry(2).unwrap(), 0);

    a.revoke_token(
        "old",
        RevokedToken {
            exp: 10,
            revoked_at: 1,
        },
    )
    .unwrap();
    a.revoke_token(
        "new",
        RevokedToken {
            exp: 1000,
            revoked_at: 1,
        },
    )
    .unwrap();
    assert!(b.token_revoked("old").unwrap() && b.token_revoked("new").unwrap());
    assert_eq!(b.prune_revoked_tokens(100).unwrap(), 1);
    assert!(!a.token_revoked("old").unwrap() && a.token_revoked("new").unwrap());
    assert_eq!(a.revoked_tokens().unwrap().len(), 1);

    let p = signet::store::Principal {
        name: "svc".into(),
        scopes: vec!["keys:read".into()],
        created: 1,
        created_by: "test".into(),
    };
    a.put_principal(&p).unwrap();
    assert_eq!(b.principal("svc").unwrap().unwrap().scopes, p.scopes);
    // A request's two reads in one: the principal found, no certificate of that serial.
    let (cert, principal) = b.caller_records("00ff", "svc", None).unwrap();
    assert!(cert.is_none());
    assert_eq!(principal.unwrap().name, "svc");
    assert!(matches!(
        b.caller_records("00ff", "nobody", None).unwrap(),
        (None, None)
    ));
    assert!(b.remove_principal("svc").unwrap());
    assert!(a.principal("svc").unwrap().is_none());
    a.check_writable().unwrap();

    // Only one node at a time holds a cluster lock.
    let mut inner_ran = None;
    let outer = a
        .exclusive("housekeeping", &mut || {
            inner_ran = Some(b.exclusive("housekeeping", &mut || ()).unwrap());
        })
        .unwrap();
    assert_eq!((outer, inner_ran), (true, Some(false)));
    assert!(b.exclusive("housekeeping", &mut || ()).unwrap());
}

/// Node B serves a request's records from its cache (a scope that allows it, all records
/// cached), and its audit journal writes the request's records as its own only while those
/// records are unchanged: after A changes the principal, the same reliance is discarded.
#[test]
fn cached_records_are_checked_in_the_audit_transaction() {
    use signet::store::audit::{Group, DISCARDED};
    use signet::store::prefetch;
    let settings = database("cache");
    let a = PgStore::open(&settings).unwrap();
    let b = PgStore::open(&settings).unwrap();
    let journal = PgJournal::new(Db::connect(&settings, 2).unwrap(), "node-b".into());
    a.insert_key(&record("k")).unwrap();
    a.put_cert(&CertRecord {
        issued_to: Some("svc".into()),
        ..active_client_cert("0aff", "CN=svc", Vec::new())
    })
    .unwrap();
    let mut principal = signet::store::Principal {
        name: "svc".into(),
        scopes: vec!["keys:sign:*".into()],
        created: 1,
        created_by: "test".into(),
    };
    a.put_principal(&principal).unwrap();
    let request = || {
        prefetch::scope(true, || {
            let (cert, who) = b.caller_records("0AFF", "svc", Some("k")).unwrap();
            assert!(cert.is_some() && b.key("k").unwrap().is_some());
            (who.unwrap().scopes, prefetch::vouch())
        })
    };
    // The first request reads (nothing to check); the second is served from the cache.
    let ((scopes, first), unchecked) = request();
    assert!(first.is_none() && !unchecked);
    assert_eq!(scopes, principal.scopes);
    let ((_, relied), unchecked) = request();
    let relied = relied.expect("the second request is served from the cache");
    assert!(!unchecked, "vouched for");
    assert_eq!(relied.0.len(), 3, "{relied:?}");
    let group = |relies_on| Group { len: 1, relies_on };
    let event = |id: &str| Event::new("svc", id, "key.sign", "k", Outcome::Ok);
    // Unchanged: written as they are, beside a group relying on nothing.
    let (records, discarded) = journal
        .append_groups(
            vec![event("r1"), event("r2")],
            &[group(Some(relied.clone())), group(None)],
        )
        .unwrap();
    assert_eq!(discarded, vec![false, false]);
    assert!(records.iter().all(|r| r.outcome == Outcome::Ok));
    // A takes a scope away: B's cached principal no longer holds; only the relying group is
    // written discarded, in the same chain.
    principal.scopes = vec!["keys:read".into()];
    a.put_principal(&principal).unwrap();
    let (records, discarded) = journal
        .append_groups(
            vec![event("r3"), event("r4")],
            &[group(Some(relied.clone())), group(None)],
        )
        .unwrap();
    assert_eq!(discarded, vec![true, false]);
    assert_eq!(records[0].outcome, Outcome::Error);
    assert!(records[0].details.contains_key(DISCARDED));
    assert_eq!(records[1].outcome, Outcome::Ok);
    assert_eq!(records[1].prev_hash, records[0].hash);
    // B's next request that reads fresh sees the change and caches it.
    let ((scopes, _), _) = prefetch::scope(false, || {
        let (_, who) = b.caller_records("0aff", "svc", Some("k")).unwrap();
        (who.unwrap().scopes, ())
    });
    assert_eq!(scopes, principal.scopes);
    // A journal with nothing to check against (the file journal) discards every relying
    // group rather than trust it.
    let dir = tempfile::tempdir().unwrap();
    let file = signet::store::audit_file::FileJournal::open(dir.path()).unwrap();
    let (_, discarded) = file
        .append_groups(
            vec![event("r5"), event("r6")],
            &[group(Some(relied)), group(None)],
        )
        .unwrap();
    assert_eq!(discarded, vec![true, false]);
}

/// Both nodes issue certificates for one public key at once: the index lists every serial
/// (none lost to a race between the nodes' read-modify-writes), once built.
#[test]
fn two_nodes_index_certificates_of_one_key() {
    let settings = database("certindex");
    let a = Arc::new(PgStore::open(&settings).unwrap());
    let b = Arc::new(PgStore::open(&settings).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (_, pem) = common::openssl_self_signed(dir.path(), "k", "/CN=k", &[]);
    let der = rustls::pki_types::CertificateDer::from_pem_file(&pem)
        .unwrap()
        .to_vec();
    let spki = signet_pki::spki_of(&der).unwrap();
    assert!(a
        .certs_of_keys(std::slice::from_ref(&spki))
        .unwrap()
        .is_none());
    assert_eq!(a.build_cert_index().unwrap(), 0);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let der = der.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    store
                        .put_cert(&active_client_cert(
                            &format!("{i:02x}{j:02x}"),
                            "CN=k",
                            der.clone(),
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let found = b.certs_of_keys(&[spki]).unwrap().unwrap();
    let serials: HashSet<String> = found[0].iter().map(|c| c.serial.clone()).collect();
    assert_eq!(serials.len(), 40, "{serials:?}");
}

#[test]
fn bad_settings_are_clear_and_keep_the_password_out() {
    let settings = database("settings");
    let with_password = PostgresSettings {
        url: settings.url.replace("signet@", "signet:hunter2@"),
        ..settings.clone()
    };
    let err = PgStore::open(&with_password).unwrap_err().to_string();
    assert!(err.contains("carries a password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("pw");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    // A password file others can read is refused before it is used.
    let err = PgStore::open(&PostgresSettings {
        password_file: Some(wrong.clone()),
        ..settings.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("chmod 600") && !err.contains("not-the-password"),
        "{err}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let err = PgStore::open(&PostgresSettings {
        password_file: Some(wrong),
        ..settings.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let nothing_there = PostgresSettings {
        url: "postgresql://signet@127.0.0.1:1/x".into(),
        timeout_ms: 500,
        ..settings
    };
    let err = PgStore::open(&nothing_there).unwrap_err().to_string();
    // The cause and the address, not only "error connecting to server".
    assert!(
        err.contains("PostgreSQL")
            && err.contains("Connection refused")
            && err.contains("127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn two_journals_write_one_gap_free_chain() {
    let settings = database("chain");
    let _store = PgStore::open(&settings).unwrap();
    let journals: Vec<Arc<PgJournal>> = ["node-a", "node-b"]
        .iter()
        .map(|node| {
            Arc::new(PgJournal::new(
                Db::connect(&settings, 2).unwrap(),
                node.to_string(),
            ))
        })
        .collect();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let journal = journals[i % 2].clone();
            std::thread::spawn(move || {
                for n in 0..20 {
                    let batch = (0..(1 + n % 4))
                        .map(|k| {
                            Event::new("t", &format!("{i}-{n}-{k}"), "key.sign", "k", Outcome::Ok)
                        })
                        .collect();
                    journal.append(batch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let records: Vec<_> = journals[0]
        .read_lines(0, 1_000)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    // 6 threads × (1+2+3+4) × 5 = 300 records, numbered 1..=300, each chained to the last.
    assert_eq!(records.len(), 300);
    let mut prev = signet::store::audit::GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.prev_hash, prev, "seq {}", r.seq);
        assert_eq!(r.compute_hash(), r.hash, "seq {}", r.seq);
        prev = r.hash.clone();
    }
    let nodes: HashSet<_> = records.iter().filter_map(|r| r.node.clone()).collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let head = journals[1].head().unwrap();
    assert_eq!((head.seq, head.hash), (300, prev));
    assert_eq!(journals[1].read(298, 10).unwrap().len(), 2);
}
