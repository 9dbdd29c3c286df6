//! `signet status`: the report of [`crate::service::Status`], for a person or as JSON.

use crate::service::status::{Part, Status};

/// Prints the report; `json` for the same document `GET /v1/status` answers.
pub(super) fn print(status: &Status, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return broken(status);
    }
    match &status.backend {
        Part::Ok(b) => {
            println!("backend       {} ({})", b.kind, b.library);
            println!("token         {} — {}", b.token, b.model);
            println!("key specs     {}", b.specs.join(" "));
            println!("algorithms    {}", b.algorithms.join(" "));
            println!(
                "sessions      {} open of {}",
                b.sessions_open, b.sessions_max
            );
            for (name, value) in &b.details {
                println!("  {name:<13} {value}");
            }
        }
        Part::Error { error } => println!("backend       NOT USABLE: {error}"),
    }
    let s = &status.store;
    match &s.not_writable {
        None if !s.probed => println!(
            "store         {} at {} (not probed: status writes nothing)",
            s.kind, s.location
        ),
        None => println!("store         {} at {}, writable", s.kind, s.location),
        Some(why) => println!(
            "store         {} at {}, NOT WRITABLE: {why}",
            s.kind, s.location
        ),
    }
    match &status.ca {
        Part::Ok(Some(ca)) => {
            for (role, c) in [
                ("root", &ca.root),
                ("intermediate", &ca.intermediate),
                ("server", &ca.server),
            ] {
                let warn = if c.days_left < 0 {
                    "  EXPIRED"
                } else if c.days_left < 30 {
                    "  EXPIRES SOON"
                } else {
                    ""
                };
                println!(
                    "{role:<14}{}  serial {}  ({})  until {}, {} days left{warn}",
                    c.subject, c.serial, c.key, c.not_after, c.days_left
                );
            }
        }
        Part::Ok(None) => println!("ca            none yet (signet ca init, or the first serve)"),
        Part::Error { error } => println!("ca            NOT READABLE: {error}"),
    }
    match &status.crl {
        Part::Ok(Some(crl)) => println!(
            "crl           number {}, made {}, next update {}",
            crl.number,
            crl.this_update,
            crl.next_update.as_deref().unwrap_or("-")
        ),
        Part::Ok(None) => println!("crl           none yet"),
        Part::Error { error } => println!("crl           NOT READABLE: {error}"),
    }
    match &status.audit {
        Part::Ok(a) => {
            println!("audit head    seq {}  {}", a.head_seq, a.head_hash);
            match &a.last_checkpoint {
                Some(c) => match &c.time {
                    Some(time) => println!(
                        "checkpoint    seq {} at {time} (anchored in the token), {} record(s) after it",
                        c.seq, a.after_checkpoint
                    ),
                    None => println!(
                        "checkpoint    seq {} anchored in the token, not in the log",
                        c.seq
                    ),
                },
                None => println!("checkpoint    none anchored yet"),
            }
            if let Some(gap) = &a.anchor_gap {
                println!("audit         BROKEN: {gap}");
            }
            if let Some(why) = &a.not_writable {
                println!("audit         NOT WRITABLE: {why}");
            }
        }
        Part::Error { error } => println!("audit         NOT READABLE: {error}"),
    }
    match &status.keys {
        Part::Ok(n) => println!("keys          {n}"),
        Part::Error { error } => println!("keys          NOT READABLE: {error}"),
    }
    broken(status)
}

/// Fails (exit status 1) when the audit log does not hold its anchor.
fn broken(status: &Status) -> anyhow::Result<()> {
    if let Part::Ok(audit) = &status.audit {
        if let Some(gap) = &audit.anchor_gap {
            anyhow::bail!("the audit log is broken: {gap}");
        }
    }
    Ok(())
}
