//! The diskwatch binary: parses the command line, loads the configuration,
//! sets up logging and signals, and runs the agent from the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use diskwatch::cli::{normalize_args, Cli, Command, TokenCommand};
use diskwatch::config::{Config, LogFormat};
use diskwatch::{client, systemd};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// Exit code for configuration errors (EX_CONFIG from sysexits.h).
const EXIT_CONFIG: u8 = 78;
/// How long the tasks may take to drain after a signal (the core publishes `agent.stopping`
/// and syncs the journal, SSE streams end, MQTT says offline).
const DRAIN: Duration = Duration::from_secs(2);
/// How long the runtime then waits for blocking calls still running (a read stuck on a dead
/// network filesystem, say) before the process exits without them: DRAIN plus this bounds the
/// whole stop, well inside systemd's TimeoutStopSec.
const BLOCKING_GRACE: Duration = Duration::from_millis(500);
/// Longest wait for the sources' start-up facts before telling systemd we are ready.
const READY_WAIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    if let Some(Command::Version) = cli.command {
        println!("diskwatch {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Token { action: TokenCommand::Generate { file, force, print } }) = &cli.command {
        return token_generate(&cli, file.clone(), *force, *print);
    }
    if let Some(Command::SmartctlHelper { smartctl, max_timeout }) = &cli.command {
        return smartctl_helper(smartctl.clone(), Duration::from_secs(*max_timeout));
    }
    let config = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(config) => config,
        Err(e) => {
            for line in &e.messages {
                eprintln!("diskwatch: configuration error: {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(token) = &config.http.auth_token {
        client::use_token(token.clone());
    }
    match cli.command {
        Some(Command::CheckConfig { .. }) => {
            // Never the token or the MQTT password: only whether they are set.
            let auth = match (&config.http.auth_token, config.http.allow_anonymous) {
                (Some(_), _) => "token required",
                (None, true) => "anonymous allowed",
                (None, false) => "loopback only, no token",
            };
            println!(
                "configuration OK (node_id {}, HTTP on {}, {auth}, MQTT {})",
                config.node_id(),
                config.http.listen,
                if config.mqtt.enabled { config.mqtt.url.as_str() } else { "disabled" }
            );
            ExitCode::SUCCESS
        }
        Some(Command::Token { .. }) => ExitCode::SUCCESS,
        Some(Command::Run { .. }) | None => run(config),
        Some(Command::Version | Command::SmartctlHelper { .. }) => ExitCode::SUCCESS,
        Some(Command::Snapshot { json, url }) => {
            let url = url.unwrap_or_else(|| client::default_url(config.http.listen));
            client_command(|_| async move { client::snapshot(&url, json, &mut std::io::stdout().lock()).await })
        }
        Some(Command::Events { follow, types, json, limit, url }) => {
            let url = url.unwrap_or_else(|| client::default_url(config.http.listen));
            let options = client::EventsOptions { types, json, limit };
            client_command(|token| async move {
                let mut out = std::io::stdout().lock();
                if follow {
                    client::follow(&url, &options, token, &mut out).await
                } else {
                    client::history(&url, &options, &mut out).await
                }
            })
        }
    }
}

/// `diskwatch token generate`: a new token in a 0600 file; the path on stderr, the token on
/// stdout only with `--print`.
fn token_generate(cli: &Cli, file: Option<std::path::PathBuf>, force: bool, print: bool) -> ExitCode {
    let path = match file {
        Some(path) => path,
        None => match Config::load_without_token(cli.config.as_deref(), &cli.overrides()) {
            Ok(config) if !config.http.auth_token_file.as_os_str().is_empty() => config.http.auth_token_file,
            Ok(_) => {
                eprintln!("diskwatch: no token file: pass --file PATH or set http.auth_token_file");
                return ExitCode::from(EXIT_CONFIG);
            }
            Err(e) => {
                for line in &e.messages {
                    eprintln!("diskwatch: configuration error: {line}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match diskwatch::http::auth::write_token_file(&path, force) {
        Ok(token) => {
            eprintln!("diskwatch: new token written to {} (mode 0600); restart the agent to use it", path.display());
            if print {
                println!("{}", token.expose());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("diskwatch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client subcommand on a small runtime; Ctrl-C or SIGTERM ends it cleanly.
fn client_command<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), client::ClientError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("diskwatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            Signals::new().recv().await;
            stop.cancel();
        });
        match command(token).await {
            Ok(()) => ExitCode::SUCCESS,
            // The reader went away (`diskwatch events -f | head`): not an error.
            Err(client::ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("diskwatch: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::builder()
        .with_default_directive(config.log_level.as_str().parse().unwrap_or_else(|_| tracing::Level::INFO.into()))
        .from_env_lossy();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// glibc malloc arenas the agent may use. By default glibc gives up to eight per core, one per
/// thread that allocates; the statvfs pool, the probe threads and the runtime each kept a
/// partly-used arena, which held about a megabyte more than two arenas do under an event flood
/// (docs/events.md, soak). With plug cycles, the kernel-mode probe threads kept the second of
/// two arenas about 1 MB full: one arena measured 11.0–11.1 MB after 40 cycles against
/// 11.9–12.3 MB, with the same latencies (docs/udev.md). Allocation is not a bottleneck here.
const MALLOC_ARENAS: libc::c_int = 1;

fn run(config: Config) -> ExitCode {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    // An explicit MALLOC_ARENA_MAX in the environment wins (glibc reads it at the first malloc,
    // before main; then this call is skipped).
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Installed once, before anything starts, and kept: a signal that arrives between two
        // waits (right after start-up, say) is held by the stream, not lost.
        let mut signals = Signals::new();
        let token = CancellationToken::new();
        let running = match diskwatch::service::start(config, token.clone(), Default::default()).await {
            Ok(running) => running,
            Err(e) => {
                error!(error = %e, "start-up failed");
                return ExitCode::FAILURE;
            }
        };
        systemd::status("starting sources");
        tokio::select! {
            ready = tokio::time::timeout(READY_WAIT, running.ready()) => {
                if ready.is_err() {
                    warn!("start-up took longer than {READY_WAIT:?}; telling systemd we are ready anyway");
                }
                systemd::ready(&systemd::ready_status(&running.agent.snapshot(), running.local_addr));
            }
            signal = signals.recv() => {
                info!(signal, "shutting down before start-up finished");
                systemd::stopping();
                token.cancel();
                let _ = tokio::time::timeout(DRAIN, running.wait()).await;
                return ExitCode::SUCCESS;
            }
        }
        let signal = signals.recv().await;
        info!(signal, "shutting down");
        systemd::stopping();
        token.cancel();
        if tokio::time::timeout(DRAIN, running.wait()).await.is_err() {
            warn!("shutdown took longer than {DRAIN:?}; exiting anyway");
        }
        ExitCode::SUCCESS
    });
    // Dropping the runtime would wait for every blocking task, forever for one stuck in the
    // kernel; leave those behind (the process exit ends their threads).
    runtime.shutdown_timeout(BLOCKING_GRACE);
    code
}

/// SIGTERM and SIGINT listeners; a signal delivered while nobody awaits [`Signals::recv`] is kept.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot install signal handlers: the agent stops only when killed");
                Self(None)
            }
        }
    }

    async fn recv(&mut self) -> &'static str {
        let Some((term, int)) = &mut self.0 else {
            // Without signal handlers the agent can only be killed; run until then.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

/// `diskwatch smartctl-helper`: one request on standard input (the connection systemd accepted),
/// the answer on standard output; what was refused or failed goes to standard error (the
/// journal). No configuration is read: the helper trusts nothing but its own command line.
fn smartctl_helper(smartctl: std::path::PathBuf, max_timeout: Duration) -> ExitCode {
    use diskwatch::smartctl::helper::Response;
    use diskwatch::smartctl::helper_serve::{serve, HelperConfig};
    let config = HelperConfig { smartctl, max_timeout, sys: "/sys".into() };
    match serve(std::io::stdin().lock(), std::io::stdout().lock(), &config) {
        Ok(Response::Rejected { reason }) => {
            eprintln!("diskwatch smartctl-helper: refused: {reason}");
            ExitCode::SUCCESS
        }
        Ok(Response::Spawn { message }) => {
            eprintln!("diskwatch smartctl-helper: {message}");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diskwatch smartctl-helper: the connection failed: {e}");
            ExitCode::FAILURE
        }
    }
}
