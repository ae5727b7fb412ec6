use clap::{Args, CommandFactory, Parser, Subcommand};
use clawgate::cli::ConnectArgs;
use clawgate::client::Client;
use clawgate::config::{self, keys, LoadOptions, Override};
use clawgate::gateway::Gateway;
use clawgate::protocol::Schemas;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "clawgate",
    version,
    about = "A schema-first control-plane gateway for a self-hosted AI assistant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on safe loopback defaults when there is no config file).
    Run(RunArgs),
    /// Connect to a running gateway, call one method and print the result as JSON.
    Call(CallArgs),
    /// Chat with an agent in the terminal: replies stream as they are written,
    /// tool calls and exec approvals show inline (/help lists the commands).
    Chat(ChatArgs),
    /// Print the token the local gateway generated (auth mode token without a
    /// configured token), e.g. to paste into the Control UI.
    Token {
        /// The gateway's state dir. Default: $CLAWGATE_STATE_DIR, else $XDG_DATA_HOME/clawgate.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Find gateways on the local network (mDNS/DNS-SD, _clawgate._tcp, or
    /// OpenClaw's _openclaw-gw._tcp) and list their addresses and what they
    /// advertise.
    Discover {
        /// How long to listen for answers, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout: u64,
        /// Print JSON: {"gateways": [{name, host, port, addresses, wsUrl, txt}]}.
        #[arg(long)]
        json: bool,
        /// Browse for OpenClaw's gateway service (_openclaw-gw._tcp), as
        /// OpenClaw's apps do, instead of clawgate's own.
        #[arg(long)]
        openclaw: bool,
    },
    /// Check or describe the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Record the protocol surface, or check two versions of it for breaking changes.
    #[command(subcommand)]
    Protocol(ProtocolCommand),
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print a shell completion script, e.g. `clawgate completions bash > /etc/bash_completion.d/clawgate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        /// Write clawgate.1 and a clawgate-<command>.1 page per command here.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write the generated artifacts in gen/ (the bundled schemas), or check they are fresh.
    Gen {
        /// Fail, writing nothing, when a file in gen/ differs from what would be written.
        #[arg(long)]
        check: bool,
        /// The repository root that holds gen/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Instead, write the TypeScript and Python client additions for a plugin's methods and
        /// events, from its manifest: [NAME=]MANIFEST, NAME being the name it is configured under
        /// (default: the manifest's name). Repeatable.
        #[arg(long = "plugin", value_name = "[NAME=]MANIFEST")]
        plugins: Vec<String>,
        /// Where --plugin writes: <out>/typescript/<name>.js and .d.ts, <out>/python/<name>_plugin.py.
        #[arg(long, default_value = "gen/plugins")]
        out: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Config file (TOML, or JSON by extension). Default: $CLAWGATE_CONFIG, ./clawgate.toml, $XDG_CONFIG_HOME/clawgate/clawgate.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where state is kept. Default: $CLAWGATE_STATE_DIR, else $XDG_DATA_HOME/clawgate.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    flags: ConfigFlags,
    /// Log at debug level.
    #[arg(long, short)]
    verbose: bool,
}

/// The flags that set config values, applied over the file and the environment.
#[derive(Args, Clone, Default)]
struct ConfigFlags {
    /// Port to listen on (0 picks a free one); overrides gateway.port.
    #[arg(long)]
    port: Option<u16>,
    /// loopback, lan, tailnet or auto; overrides gateway.bind.
    #[arg(long)]
    bind: Option<String>,
    /// An explicit address to listen on; overrides gateway.host.
    #[arg(long)]
    host: Option<String>,
}

impl ConfigFlags {
    fn overrides(&self) -> Vec<Override> {
        let flag = |flag: &str, pointer: &str, value: Value| Override {
            flag: flag.to_string(),
            pointer: pointer.to_string(),
            value,
        };
        let mut out = Vec::new();
        if let Some(port) = self.port {
            out.push(flag("--port", keys::GATEWAY_PORT, json!(port)));
        }
        if let Some(bind) = &self.bind {
            out.push(flag("--bind", keys::GATEWAY_BIND, json!(bind)));
        }
        if let Some(host) = &self.host {
            out.push(flag("--host", keys::GATEWAY_HOST, json!(host)));
        }
        out
    }
}

#[derive(Clone, Copy, Default, clap::ValueEnum)]
enum Format {
    /// For people: compiler-style reports, colours on a terminal.
    #[default]
    Human,
    /// For editors and CI: one JSON document.
    Json,
}

#[derive(Args)]
struct CallArgs {
    /// Method name, e.g. health.
    method: String,
    /// Params as JSON, e.g. '{"sessionKey":"agent:main:main"}'.
    params: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args)]
struct ChatArgs {
    /// The agent to talk to. Default: agents.default.
    #[arg(long)]
    agent: Option<String>,
    /// The session to continue. Default: agent:<agent>:main.
    #[arg(long)]
    session: Option<String>,
    /// Send this one message, print the reply as it streams and exit.
    #[arg(short, long)]
    message: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a plugin manifest (the JSON its first line of output holds); exit 1 when the gateway would refuse it.
    Check { manifest: PathBuf },
}

#[derive(Subcommand)]
enum ProtocolCommand {
    /// Check a newer protocol against older ones; exit 1 when a client of an older one could break.
    Check {
        /// The older protocol: a directory of recorded releases (snapshots/protocol: each one
        /// still served is checked), one recorded release (v1.json), a bundled schema
        /// (gen/schema/clawgate.schema.json) or a directory laid out like schema/.
        #[arg(long)]
        against: PathBuf,
        /// The newer protocol, in the same forms; default the one built into this binary.
        #[arg(long)]
        current: Option<PathBuf>,
        /// The project's policy: severity overrides and accepted findings with reasons.
        /// Default: policy.toml in the --against directory, if there is one.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: clawgate::cli::protocol::ReportFormat,
        /// The least severe finding that fails the check.
        #[arg(long, value_enum, default_value_t)]
        fail_on: clawgate::cli::protocol::FailOn,
        /// The same as --format json.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Every difference between two protocols (release notes with --format markdown).
    Diff {
        /// The older protocol: a recorded release, a bundled schema or a schema directory.
        old: PathBuf,
        /// The newer protocol, in the same forms.
        new: PathBuf,
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: clawgate::cli::protocol::ReportFormat,
    },
    /// Print the protocol surface (what snapshots/protocol/vN.json records) of this binary,
    /// or of a directory laid out like schema/.
    Snapshot {
        #[arg(long)]
        schema: Option<PathBuf>,
    },
    /// Print the rules the check applies, with their ids and default severities (Markdown).
    Rules,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (default: the one `run` would use); exit 1 when invalid.
    Validate {
        path: Option<PathBuf>,
        /// human (caret under each bad value) or json (problems with line/column spans).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the effective configuration (secrets masked), or one dotted key of it.
    Show {
        /// A dotted key such as gateway or gateway.port.
        key: Option<String>,
        /// Also print where each value came from: default, file:line:column,
        /// environment variable or flag.
        #[arg(long)]
        origin: bool,
        /// Config file. Default: the one `run` would use.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The state dir, where a generated token is kept. Default: $CLAWGATE_STATE_DIR, else $XDG_DATA_HOME/clawgate.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        flags: ConfigFlags,
        /// human (key = value lines) or json.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Print the reference table of every config key (Markdown).
    Docs,
    /// Write a clawgate.toml from an OpenClaw config (openclaw.json, JSON5,
    /// with cron/jobs.json beside it), and list what could not be carried
    /// over and why.
    ImportOpenclaw {
        /// The openclaw.json to read, e.g. ~/.openclaw/openclaw.json.
        path: PathBuf,
        /// OpenClaw's cron jobs file. Default: cron/jobs.json beside PATH,
        /// when there is one.
        #[arg(long)]
        jobs: Option<PathBuf>,
        /// Write the config here (refused if the file exists) instead of
        /// printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Bring a config file to the current format version: keys renamed
    /// since are rewritten under their new names (TOML comments kept).
    /// Prints the upgraded file, or with --write replaces it.
    Upgrade {
        /// Config file. Default: the one `run` would use.
        path: Option<PathBuf>,
        /// Replace the file (atomically) instead of printing it.
        #[arg(long)]
        write: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Call(args) => call(args),
        Command::Chat(args) => chat(args),
        Command::Token { state_dir } => print_token(state_dir),
        Command::Discover {
            timeout,
            json,
            openclaw,
        } => clawgate::cli::discover(timeout, json, openclaw),
        Command::Config(ConfigCommand::Validate { path, format }) => validate(path, format),
        Command::Config(ConfigCommand::Upgrade { path, write }) => upgrade(path, write),
        Command::Config(ConfigCommand::ImportOpenclaw { path, jobs, out }) => {
            import_openclaw(&path, jobs.as_deref(), out.as_deref())
        }
        Command::Config(ConfigCommand::Show {
            key,
            origin,
            config,
            state_dir,
            flags,
            format,
        }) => show(key, origin, config, state_dir, &flags, format),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "clawgate",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Gen {
            check,
            root,
            plugins,
            out,
        } if !plugins.is_empty() => {
            let files = clawgate::cli::plugin::client_files(&root, &out, &plugins);
            match files.and_then(|files| write_files(&root, files, check)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("clawgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Gen { check, root, .. } => generate(&root, check),
        Command::Protocol(command) => ExitCode::from(protocol(command)),
        Command::Plugin(PluginCommand::Check { manifest }) => {
            ExitCode::from(clawgate::cli::plugin::check(&manifest))
        }
        Command::Config(ConfigCommand::Docs) => {
            print!("{}", clawgate::docs::config_table());
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Schema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&config_schema()).expect("schema is JSON")
            );
            ExitCode::SUCCESS
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let overrides = args.flags.overrides();
    let state_dir = config::resolve_state_dir(args.state_dir.as_deref());
    if let Err(e) = create_private_dir(&state_dir) {
        eprintln!(
            "clawgate: cannot create state dir {}: {e}",
            state_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let mut options = match config::resolve_config_path(args.config.as_deref()) {
        Ok(path) => LoadOptions::from_process_env(path, overrides),
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(2);
        }
    };
    options.state_dir = Some(state_dir.clone());
    if let Some(path) = &options.path {
        config::remove_stale_temp_files(path);
    }
    let loaded = match config::load(&options) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{}", e.render(colour_on_stderr()));
            return ExitCode::from(2);
        }
    };
    let log_tail = clawgate::logs::LogTail::new();
    let log_control = init_logging(&loaded.config, args.verbose, log_tail.clone());
    for moved in &loaded.migrated {
        tracing::warn!("config: {moved}");
    }
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!("cannot raise the open-file limit: {e}");
    }
    let notifier = clawgate::systemd::Notifier::from_env().map(std::sync::Arc::new);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        if let Some(notifier) = &notifier {
            notifier.spawn_watchdog();
        }
        Schemas::get();
        let backend = clawgate::cluster::Backend::open(&loaded.config, &state_dir)
            .await
            .map_err(std::io::Error::other)?;
        let gw = Gateway::new(loaded, options, state_dir, backend);
        gw.set_log_tail(log_tail);
        if let Some(control) = log_control {
            gw.set_log_control(control);
        }
        let listeners = clawgate::server::bind(&gw).await?;
        let addr = listeners.primary()?;
        // Handlers first: a SIGTERM while Tailscale publishes, or right
        // after the ready line, still shuts down gracefully (and undoes
        // the publishing) instead of killing the process.
        let signal = shutdown_signal()?;
        let sidecars = clawgate::server::start_sidecars(&gw).await?;
        let stopping = notifier.clone();
        let membership = gw.rt.membership.clone();
        let displaced = membership.clone();
        let shutdown = async move {
            let displaced = async {
                match displaced {
                    Some(membership) => drop(membership.displaced().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signal => {}
                _ = displaced => {}
            }
            if let Some(notifier) = stopping {
                notifier.stopping();
            }
        };
        let scheme = listeners.scheme();
        println!("clawgate listening on {scheme}://{addr}");
        for other in listeners.addresses().iter().skip(1) {
            tracing::info!("also listening on {scheme}://{other}");
        }
        tracing::info!(%addr, config = ?gw.info.config_path, "gateway ready");
        if let Some(notifier) = &notifier {
            notifier.ready(&format!("listening on {scheme}://{addr}"));
        }
        clawgate::server::serve(gw, listeners, sidecars, shutdown).await?;
        match membership.and_then(|m| m.displacement()) {
            Some(reason) => Err(std::io::Error::other(reason)),
            None => Ok(()),
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("gateway stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("clawgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves
/// at the first of either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Sets up logging to stderr and into `tail` (for logs.tail). Unless --verbose or CLAWGATE_LOG fix the
/// filter, returns the control that lets a reload change logging.level.
fn init_logging(
    config: &config::Config,
    verbose: bool,
    tail: std::sync::Arc<clawgate::logs::LogTail>,
) -> Option<clawgate::gateway::LogControl> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let fixed = if verbose {
        Some(EnvFilter::new("debug"))
    } else {
        std::env::var("CLAWGATE_LOG")
            .ok()
            .and_then(|v| EnvFilter::try_new(v).ok())
    };
    let overridden = fixed.is_some();
    let filter = fixed.unwrap_or_else(|| {
        EnvFilter::try_new(config.logging.level.as_str()).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let kept = tracing_subscriber::fmt::layer()
        .json()
        .with_ansi(false)
        .with_writer(clawgate::logs::Lines(tail))
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            clawgate::logs::kept_target(meta.target())
        }));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match config.logging.format {
        clawgate::protocol::types::LoggingConfigFormat::Json => output.json().boxed(),
        clawgate::protocol::types::LoggingConfigFormat::Pretty => output.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(kept)
        .init();
    if overridden {
        return None;
    }
    Some(Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}

/// Creates the state dir (0700), or narrows an existing one to its owner.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn print_token(state_dir: Option<PathBuf>) -> ExitCode {
    let state_dir = config::resolve_state_dir(state_dir.as_deref());
    match config::read_token(&state_dir) {
        Some(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "clawgate: no generated token in {} (a gateway with auth mode token and no gateway.auth.token creates it at start)",
                config::token_path(&state_dir).display()
            );
            ExitCode::FAILURE
        }
    }
}

fn call(args: CallArgs) -> ExitCode {
    let params: Value = match args.params.as_deref().map(serde_json::from_str).transpose() {
        Ok(p) => p.unwrap_or_else(|| json!({})),
        Err(e) => {
            eprintln!("clawgate: params are not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match args.connect.resolve("clawgate-cli") {
        Ok(target) => target,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        let mut client = Client::connect(&target.url, &target.options).await?;
        let result = client.call(&args.method, params).await;
        client.close().await;
        result
    });
    match result {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            clawgate::cli::report(&e);
            ExitCode::FAILURE
        }
    }
}

fn chat(args: ChatArgs) -> ExitCode {
    let target = match args.connect.resolve("clawgate-chat") {
        Ok(target) => target,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let chat = clawgate::cli::chat::ChatArgs {
        agent: args.agent,
        session: args.session,
        message: args.message,
    };
    match runtime.block_on(clawgate::cli::chat::run(target, chat)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            clawgate::cli::report(&e);
            ExitCode::FAILURE
        }
    }
}

fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let written = match dir {
        None => man_page(Cli::command()).render(&mut std::io::stdout()),
        Some(dir) => write_man_pages(&Cli::command(), dir),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate: cannot write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A page titled in capitals, as man pages are.
fn man_page(command: clap::Command) -> clap_mangen::Man {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let title = command
        .get_display_name()
        .unwrap_or(command.get_name())
        .to_uppercase();
    clap_mangen::Man::new(command).title(title)
}

/// clawgate.1 and clawgate-<command>.1 for every command below it.
fn write_man_pages(command: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    let mut command = command.clone().disable_help_subcommand(true);
    command.build();
    for sub in command.get_subcommands() {
        write_man_pages(sub, dir)?;
    }
    let page = man_page(command);
    let path = dir.join(page.get_filename());
    let mut file = std::fs::File::create(&path)?;
    page.render(&mut file)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn import_openclaw(path: &Path, jobs: Option<&Path>, out: Option<&Path>) -> ExitCode {
    let converted = match clawgate::cli::import::convert(path, jobs) {
        Ok(converted) => converted,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        Some(out) if out.exists() => {
            eprintln!("clawgate: {} exists; choose another --out", out.display());
            return ExitCode::FAILURE;
        }
        Some(out) => {
            if let Err(e) = config::write_atomic(out, &converted.toml) {
                eprintln!("clawgate: cannot write {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", out.display());
        }
        None => print!("{}", converted.toml),
    }
    if let Some(jobs) = &converted.jobs {
        eprintln!("cron jobs read from {}", jobs.display());
    }
    if converted.left.is_empty() {
        eprintln!("everything was carried over");
    } else {
        eprintln!("not carried over ({}):", converted.left.len());
        for left in &converted.left {
            eprintln!("  {}: {}", left.key, left.why);
        }
    }
    ExitCode::SUCCESS
}

fn upgrade(path: Option<PathBuf>, write: bool) -> ExitCode {
    let path = match config::resolve_config_path(path.as_deref()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            eprintln!("clawgate: no config file found; nothing to upgrade");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let upgraded = match clawgate::cli::upgrade::upgrade(&path, write) {
        Ok(upgraded) => upgraded,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    for moved in &upgraded.moved {
        eprintln!(
            "{}: {} → {} (config version {})",
            path.display(),
            moved.from,
            moved.to,
            moved.version
        );
    }
    let version = config::migrate::current_version();
    match (write, upgraded.changed) {
        (_, false) => eprintln!("{} is already config version {version}", path.display()),
        (true, true) => eprintln!("{} rewritten as config version {version}", path.display()),
        (false, true) => print!("{}", upgraded.text),
    }
    ExitCode::SUCCESS
}

fn validate(path: Option<PathBuf>, format: Format) -> ExitCode {
    let path = match config::resolve_config_path(path.as_deref()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            eprintln!("clawgate: no config file found; running on defaults is valid");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = config::load(&LoadOptions::from_process_env(
        Some(path.clone()),
        Vec::new(),
    ));
    if let Format::Json = format {
        let problems = result
            .as_ref()
            .err()
            .map(|e| e.problems())
            .unwrap_or_default();
        let report = json!({
            "ok": result.is_ok(),
            "path": path.display().to_string(),
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
        return if result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match result {
        Ok(loaded) => {
            for moved in &loaded.migrated {
                eprintln!("warning: {moved}");
            }
            println!("{} is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.render(colour_on_stderr()));
            ExitCode::FAILURE
        }
    }
}

/// Colours only for a person at a terminal, and never with NO_COLOR set.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn show(
    key: Option<String>,
    origin: bool,
    config_path: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    flags: &ConfigFlags,
    format: Format,
) -> ExitCode {
    let mut options = match config::resolve_config_path(config_path.as_deref()) {
        Ok(path) => LoadOptions::from_process_env(path, flags.overrides()),
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::from(2);
        }
    };
    // The token a running gateway generated counts, but showing the
    // config never creates one.
    let state_dir = config::resolve_state_dir(state_dir.as_deref());
    if config::read_token(&state_dir).is_some() {
        options.state_dir = Some(state_dir.clone());
    }
    let loaded = match config::load(&options) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{}", e.render(colour_on_stderr()));
            return ExitCode::FAILURE;
        }
    };
    let at = key.as_deref().map(config::pointer).unwrap_or_default();
    let shown = config::redacted(&loaded.effective);
    let Some(value) = shown.pointer(&at) else {
        eprintln!(
            "clawgate: no config key {}",
            key.as_deref().unwrap_or_default()
        );
        return ExitCode::FAILURE;
    };
    let origins = loaded.origins(&at);
    let tls_key = clawgate::config::keys::GATEWAY_TLS;
    let fingerprint = (loaded.config.gateway.tls.enabled
        && (tls_key.starts_with(&at) || at.starts_with(tls_key)))
    .then(|| clawgate::cli::local_fingerprint(&loaded.config, loaded.path.as_deref(), &state_dir));
    if let Format::Json = format {
        let mut out = json!({ "value": value });
        if let Some(Ok(fingerprint)) = &fingerprint {
            out["tlsFingerprint"] = json!(fingerprint);
        }
        if origin {
            let by_key: serde_json::Map<String, Value> = origins
                .into_iter()
                .map(|(leaf, origin)| (config::dotted(&leaf), json!(origin)))
                .collect();
            out["origins"] = Value::Object(by_key);
        }
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    let width = origins
        .iter()
        .map(|(_, o)| config::describe_origin(o).len())
        .max()
        .unwrap_or(0);
    for (pointer, o) in &origins {
        let key = config::dotted(pointer);
        let from = config::describe_origin(o);
        let leaf = shown.pointer(pointer).cloned().unwrap_or(Value::Null);
        if origin {
            println!("{from:width$}  {key} = {leaf}");
        } else {
            println!("{key} = {leaf}");
        }
    }
    match fingerprint {
        Some(Ok(fingerprint)) => {
            println!("# the certificate file's SHA-256 fingerprint: {fingerprint} (`status` shows the one served)")
        }
        Some(Err(e)) => println!("# {e}"),
        None => {}
    }
    ExitCode::SUCCESS
}

fn config_schema() -> Value {
    clawgate::docs::config_schema()
}

fn protocol(command: ProtocolCommand) -> u8 {
    use clawgate::cli::protocol::{self, ReportFormat};
    match command {
        ProtocolCommand::Check {
            against,
            current,
            policy,
            format,
            fail_on,
            json,
        } => {
            let format = if json { ReportFormat::Json } else { format };
            protocol::check(
                &against,
                current.as_deref(),
                policy.as_deref(),
                format,
                fail_on,
            )
        }
        ProtocolCommand::Diff {
            old,
            new,
            policy,
            format,
        } => protocol::diff(&old, &new, policy.as_deref(), format),
        ProtocolCommand::Snapshot { schema } => protocol::snapshot(schema.as_deref()),
        ProtocolCommand::Rules => {
            print!("{}", clawgate::compat::rules::markdown_table());
            0
        }
    }
}

fn generate(root: &std::path::Path, check: bool) -> ExitCode {
    let mut files: Vec<(String, String)> = clawgate::docs::generated_files()
        .into_iter()
        .map(|(path, content)| (path.to_string(), content))
        .collect();
    let sdks = clawgate::sdk::typescript_files(root).and_then(|mut ts| {
        ts.extend(clawgate::sdk::python_files()?);
        Ok(ts)
    });
    let written = sdks.and_then(|sdk| {
        files.extend(sdk);
        write_files(root, files, check)
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the files that differ (paths relative to `root`); with `check`,
/// writes nothing and fails naming the stale ones.
fn write_files(
    root: &std::path::Path,
    files: Vec<(String, String)>,
    check: bool,
) -> Result<(), String> {
    let mut stale = Vec::new();
    for (path, content) in files {
        let full = root.join(&path);
        let current = std::fs::read_to_string(&full).unwrap_or_default();
        if current == content {
            continue;
        }
        if check {
            stale.push(path);
            continue;
        }
        full.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&full, content))
            .map_err(|e| format!("cannot write {}: {e}", full.display()))?;
        println!("wrote {path}");
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "stale generated files (run `clawgate gen`): {}",
            stale.join(", ")
        ))
    }
}
