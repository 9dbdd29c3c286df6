//! The pipeline in process: a `Service` over a temporary data directory (the embedded SoftHSM2
//! token, loaded into this process, and sled), no server and no `signet` process. Operations go
//! through `Service::execute` as the API's and the CLI's do, so the rules — scopes, the
//! cross-principal rules, the last admin, refusals recorded before the answer — run in
//! milliseconds once the service is open.

#![allow(clippy::unwrap_used)]

use signet::domain::keys::KeyName;
use signet::error::Error;
use signet::service::{Caller, CreateKey, DeletePrincipal, PutPrincipal, Service};
use signet::store::Outcome;
use signet_hsm::KeySpec;

mod in_process;
#[path = "common/proc.rs"]
mod proc_counts;

use in_process::{client, service, service_with};

fn create_key(name: &str) -> CreateKey {
    CreateKey {
        name: KeyName::parse(name).unwrap(),
        spec: KeySpec::EcP256,
    }
}

/// The last record the audit log holds for `action`.
fn last_record(service: &Service, action: &str) -> signet::store::AuditRecord {
    service
        .audit()
        .read(0, 100_000)
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| r.action == action)
        .unwrap_or_else(|| panic!("no {action} record"))
}

/// The record of a key use by `n`.
fn use_of(n: &str) -> Vec<signet::store::Event> {
    vec![signet::store::Event::new(
        "app",
        n,
        "key.sign",
        "k",
        Outcome::Ok,
    )]
}

/// Two key uses under way at once (each announced when it starts): whichever submits first
/// leads and waits for the other's record, so both go in one batch (one sync, or one
/// database transaction). Without the wait the first would write alone.
#[test]
fn records_of_key_uses_under_way_share_one_batch() {
    let (_dir, service) = service_with(|c| c.audit.group_wait_us = 10_000);
    let audit = service.audit();
    let batches = || {
        audit
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = batches();
    let (first, second) = (audit.announce(), audit.announce());
    std::thread::scope(|s| {
        let leader = s.spawn(|| first.submit(use_of("first")).wait());
        let follower = second.submit(use_of("second")).wait();
        leader.join().unwrap().unwrap();
        follower.unwrap();
    });
    assert_eq!(batches() - before, 1, "two announced records, two batches");
    // Under a steady load the caller just answered comes back: after a batch of two, a
    // leader lingers (within the wait) for a second request, even one not yet under way when
    // it starts. Without it the first would write alone.
    let before = batches();
    std::thread::scope(|s| {
        let leader = s.spawn(|| audit.announce().submit(use_of("third")).wait());
        std::thread::sleep(std::time::Duration::from_millis(2));
        audit.announce().submit(use_of("fourth")).wait().unwrap();
        leader.join().unwrap().unwrap();
    });
    assert_eq!(
        batches() - before,
        1,
        "the leader did not wait for the second"
    );
    let before = batches();
    // A use that ends without a record (its guard dropped) is no longer waited for.
    let gone = audit.announce();
    drop(gone);
    audit.announce().submit(use_of("alone")).wait().unwrap();
    assert_eq!(batches() - before, 1);
}

/// A lone caller writes its own record, on its own thread: no hand-off to the background
/// thread. Once batches hold several requests, a caller hands its record to the background
/// thread and goes on at once, without blocking: a worker that synced the log itself would
/// leave its CPU idle while the next requests' key uses waited for a worker.
#[test]
fn a_lone_caller_writes_its_record_and_under_concurrency_the_background_thread_does() {
    let (_dir, service) = service_with(|c| c.audit.group_wait_us = 10_000);
    let audit = service.audit();
    audit.announce().submit(use_of("first")).wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let background = thread_switches("signet-audit");
    for i in 0..20 {
        audit
            .announce()
            .submit(use_of(&format!("lone-{i}")))
            .wait()
            .unwrap();
    }
    let woken = thread_switches("signet-audit") - background;
    assert!(
        woken <= 2,
        "the background thread woke {woken} times for 20 lone records"
    );

    // Four key uses at once: one batch of four.
    let uses: Vec<_> = (0..4).map(|_| audit.announce()).collect();
    std::thread::scope(|s| {
        let writers: Vec<_> = uses
            .into_iter()
            .enumerate()
            .map(|(i, u)| s.spawn(move || u.submit(use_of(&format!("busy-{i}"))).wait()))
            .collect();
        for w in writers {
            w.join().unwrap().unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = proc_counts::own_switches();
    let pending = audit.announce().submit(use_of("next"));
    let blocked = proc_counts::own_switches() - before;
    pending.wait().unwrap();
    assert_eq!(
        blocked, 0,
        "the caller blocked {blocked} times writing its record under concurrency"
    );
    assert_eq!(last_record(&service, "key.sign").request_id, "next");
}

#[test]
fn a_scope_allows_its_operation_and_its_absence_is_refused_and_recorded() {
    let (_dir, service) = service();
    let refused = service
        .execute(&client("nobody", &[]), create_key("k1"))
        .wait();
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let record = last_record(&service, "key.create");
    assert_eq!(record.outcome, Outcome::Denied);
    assert_eq!(record.principal, "nobody");
    assert!(service.store().key("k1").unwrap().is_none());

    let made = service
        .execute(&client("maker", &["keys:create"]), create_key("k1"))
        .wait()
        .unwrap();
    assert_eq!(made.record.name, "k1");
    let record = last_record(&service, "key.create");
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.principal, "maker");
}

#[test]
fn nobody_grants_what_they_do_not_hold_or_changes_their_own_scopes() {
    let (_dir, service) = service();
    let manager = client("manager", &["principals:manage"]);
    let grant = |scopes: &[&str]| {
        PutPrincipal::new(
            "junior".into(),
            scopes.iter().map(|s| s.to_string()).collect(),
        )
    };
    let escalated = service.execute(&manager, grant(&["admin"])).wait();
    assert!(
        matches!(&escalated, Err(Error::Forbidden(d)) if d.contains("admin")),
        "{escalated:?}"
    );
    assert!(service.store().principal("junior").unwrap().is_none());
    assert_eq!(
        last_record(&service, "principal.create").outcome,
        Outcome::Denied
    );
    // What it holds, it may grant.
    service
        .execute(&manager, grant(&["principals:manage"]))
        .wait()
        .unwrap();
    // Not to itself.
    let own = service
        .execute(
            &manager,
            PutPrincipal::new("manager".into(), vec!["admin".into()]),
        )
        .wait();
    assert!(matches!(own, Err(Error::Forbidden(_))), "{own:?}");
}

#[test]
fn the_last_usable_admin_cannot_be_deleted() {
    let (_dir, service) = service();
    // `serve`'s first start: the CA, the server certificate and the first admin's bundle.
    service
        .bootstrap("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .expect("a first start makes the CA");
    let admin = service.config().server.admin.clone();
    let refused = service
        .execute(&Caller::operator(), DeletePrincipal::new(admin.clone()))
        .wait();
    assert!(
        matches!(&refused, Err(Error::Conflict(d) | Error::Forbidden(d)) if d.contains("admin")),
        "{refused:?}"
    );
    assert!(service.store().principal(&admin).unwrap().is_some());
    assert_eq!(
        last_record(&service, "principal.delete").outcome,
        Outcome::Denied
    );
}

/// Voluntary context switches of this process's thread named `name`.
fn thread_switches(name: &str) -> u64 {
    proc_counts::thread_switches(std::process::id(), name)
        .unwrap_or_else(|| panic!("no thread named {name}"))
}

/// A checkpoint falls due while a leader is writing (here it lingers for a use under way):
/// the background audit thread sleeps until the leader is done and tells it, instead of
/// waking every millisecond to look — it did, about 300 times here (once a millisecond from
/// the moment the checkpoint fell due), and under a steady load a leader is writing most of
/// the time.
#[test]
fn the_background_writer_sleeps_while_a_leader_writes() {
    let (_dir, service) = service_with(|c| {
        c.audit.checkpoint_interval_secs = 1;
        c.audit.group_wait_us = 2_000_000;
    });
    let audit = service.audit();
    // One record no checkpoint covers yet: a checkpoint falls due within the second.
    audit.announce().submit(use_of("first")).wait().unwrap();
    let under_way = audit.announce();
    std::thread::scope(|s| {
        // The leader writes `second` and lingers (up to 2 s) for the use under way.
        let leader = s.spawn(|| audit.announce().submit(use_of("second")).wait());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let before = thread_switches("signet-audit");
        std::thread::sleep(std::time::Duration::from_millis(1300));
        let wakes = thread_switches("signet-audit") - before;
        drop(under_way);
        leader.join().unwrap().unwrap();
        assert!(
            wakes < 30,
            "the background thread woke {wakes} times while a leader wrote"
        );
    });
    // The checkpoint that fell due is written once the leader is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while service
        .audit()
        .read(0, 100)
        .unwrap()
        .last()
        .map(|r| r.action.as_str())
        != Some("audit.checkpoint")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after the leader"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
