use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    // No transparent huge pages for this process: where the kernel's setting is "always", the
    // allocator's arena is otherwise faulted in 2 MiB at a time (45 MB resident when idle). A
    // kernel without the option refuses; nothing depends on it. (The flag is the process's.)
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = signet::cli::Cli::parse();
    if !matches!(cli.command, signet::cli::Command::Serve(_)) {
        quiet_on_closed_stdout();
    }
    // The server logs its work; the CLI speaks only when something is wrong.
    let level = if matches!(cli.command, signet::cli::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGNET_LOG")
        // cryptoki logs an ERROR for every mechanism number it has no name for, and for closing
        // sessions that a token already dropped: noise, not information. PostgreSQL's NOTICEs
        // ("relation already exists, skipping" at every start) come at INFO from the client.
        // The yubikey crate logs an ERROR for every reader without a card (a second, empty
        // reader at every command); Signet reports what failed in its own words.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "{level},cryptoki=off,yubikey=off,sled=warn,tokio_postgres=warn"
            ))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    if cli.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder
            .fmt_fields(signet::support::logfmt::QuotedFields)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    match signet::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A command whose reader went away (`signet key list | head -1`) ends as `cat` would, with
/// status 141 (128 + SIGPIPE) and no panic message: printing to a closed pipe panics in Rust,
/// which ignores SIGPIPE. Only for the CLI; the server keeps SIGPIPE ignored for its sockets.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
