//! Where a command connects and with which credential: flags first, then
//! `CLAWGATE_*` variables, then the local config, then the token the
//! local gateway generated in its state dir.

use crate::client::ConnectOptions;
use crate::config::{self, LoadOptions};
use crate::tls::client::{Identity, Trust};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct ConnectArgs {
    /// Gateway URL. Default: $CLAWGATE_URL, else the port of the local config
    /// (wss:// when its gateway.tls is on), else ws://127.0.0.1:18789.
    #[arg(long)]
    pub url: Option<String>,
    /// Token for auth mode token (visible to other local users in the process
    /// list: prefer --token-file or $CLAWGATE_TOKEN). Default: $CLAWGATE_TOKEN,
    /// else the local config's, else the one the local gateway generated.
    #[arg(long)]
    pub token: Option<String>,
    /// Read the token from this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The local gateway's state dir, where a generated token is kept.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Password for auth mode password. Default: $CLAWGATE_PASSWORD, else the local config's.
    #[arg(long)]
    pub password: Option<String>,
    /// Trust the wss:// gateway whose certificate has this SHA-256
    /// fingerprint (as `clawgate status` prints it), e.g. a self-signed one.
    /// Default: $CLAWGATE_TLS_FINGERPRINT; for the local gateway (no --url),
    /// the fingerprint of the certificate its config serves.
    #[arg(long)]
    pub tls_fingerprint: Option<String>,
    /// A client certificate (PEM) to present to a gateway that requires one
    /// (its gateway.tls.caPath), with --tls-client-key. Default:
    /// $CLAWGATE_TLS_CLIENT_CERT.
    #[arg(long, requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The key of --tls-client-cert. Default: $CLAWGATE_TLS_CLIENT_KEY.
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Config file to read the URL and credential from.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A gateway to connect to, with the credential to present.
pub struct Target {
    pub url: String,
    pub options: ConnectOptions,
}

impl ConnectArgs {
    /// Resolves the URL and credential; fails only when a named token
    /// file cannot be read.
    pub fn resolve(self, client_name: &str) -> Result<Target, String> {
        let resolved = config::resolve_config_path(self.config.as_deref()).ok();
        let config_path = resolved.clone().flatten();
        let local = resolved
            .and_then(|path| config::load(&LoadOptions::from_process_env(path, Vec::new())).ok())
            .map(|l| l.config);
        let state_dir = config::resolve_state_dir(self.state_dir.as_deref());
        let explicit = self.url.or_else(|| std::env::var("CLAWGATE_URL").ok());
        let local_tls = local.as_ref().filter(|c| c.gateway.tls.enabled);
        let pin = match self
            .tls_fingerprint
            .or_else(|| std::env::var("CLAWGATE_TLS_FINGERPRINT").ok())
        {
            Some(text) => Some(crate::tls::parse_fingerprint(&text)?),
            None if explicit.is_none() => local_tls
                .map(|c| local_fingerprint(c, config_path.as_deref(), &state_dir))
                .transpose()?,
            None => None,
        };
        let url = explicit.unwrap_or_else(|| {
            let port = local.as_ref().map_or(18789, |c| c.gateway.port);
            let scheme = if local_tls.is_some() { "wss" } else { "ws" };
            format!("{scheme}://127.0.0.1:{port}")
        });
        let auth = local.as_ref().map(|c| &c.gateway.auth);
        let token_file = match self.token_file.as_deref().map(std::fs::read_to_string) {
            Some(Ok(text)) => Some(text.trim().to_string()),
            // The error names the file, never its content.
            Some(Err(e)) => return Err(format!("cannot read the token file: {e}")),
            None => None,
        };
        let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let identity = match (
            self.tls_client_cert
                .or_else(|| from_env("CLAWGATE_TLS_CLIENT_CERT")),
            self.tls_client_key
                .or_else(|| from_env("CLAWGATE_TLS_CLIENT_KEY")),
        ) {
            (Some(cert), Some(key)) => Some(Identity { cert, key }),
            (None, None) => None,
            _ => {
                return Err(
                    "a client certificate needs its key: give both --tls-client-cert and --tls-client-key"
                        .to_string(),
                )
            }
        };
        let options = ConnectOptions {
            token: self
                .token
                .or(token_file)
                .or_else(|| std::env::var("CLAWGATE_TOKEN").ok())
                .or_else(|| auth.and_then(|a| a.token.as_ref().map(|t| t.to_string())))
                .or_else(|| config::read_token(&state_dir)),
            password: self
                .password
                .or_else(|| std::env::var("CLAWGATE_PASSWORD").ok())
                .or_else(|| auth.and_then(|a| a.password.as_ref().map(|p| p.to_string()))),
            client_name: client_name.to_string(),
            tls: pin.map_or(Trust::Platform, Trust::Pinned),
            tls_identity: identity,
            ..ConnectOptions::default()
        };
        Ok(Target { url, options })
    }
}

/// The fingerprint of the certificate the local config's gateway serves:
/// its certPath, or the pair it generated in the state dir.
pub fn local_fingerprint(
    config: &config::Config,
    config_path: Option<&std::path::Path>,
    state_dir: &std::path::Path,
) -> Result<String, String> {
    let cert = match &config.gateway.tls.cert_path {
        Some(path) => {
            let base = config_path.and_then(std::path::Path::parent);
            base.map_or_else(
                || PathBuf::from(path.as_str()),
                |dir| dir.join(path.as_str()),
            )
        }
        None => state_dir.join("tls").join(crate::tls::GENERATED_CERT),
    };
    crate::tls::file_fingerprint(&cert).map_err(|e| {
        format!("the local gateway serves TLS, but its certificate cannot be pinned: {e}; pass --url and --tls-fingerprint")
    })
}
