//! TLS on the listener, against real TLS clients: openssl s_client, curl,
//! the CLI, the Rust, Python and TypeScript clients pinning the
//! certificate; certificates made by openssl, replaced on disk while
//! clients are connected.

use crate::support::*;
use clawgate::tls::client::Trust;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = run("openssl", args, dir);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-256 fingerprint of a PEM certificate, as openssl prints it.
pub fn fingerprint_of(cert: &Path) -> String {
    let out = openssl(
        cert.parent().unwrap(),
        &[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    out.trim().split_once('=').unwrap().1.to_string()
}

/// A test CA in `dir` (ca.pem, ca.key) that signs certificates for
/// localhost and 127.0.0.1.
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=clawgate test CA",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,DNS:gw.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
}

/// `<name>.crt` and `<name>.key` signed by the CA: an RSA key, or ECDSA P-256.
fn make_leaf(dir: &Path, name: &str, rsa: bool) -> PathBuf {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let mut args = vec!["req", "-newkey"];
    if rsa {
        args.push("rsa:2048");
    } else {
        args.extend(["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
    }
    args.extend([
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    dir.join(crt)
}

fn pinned(fingerprint: &str) -> ConnectOptions {
    ConnectOptions {
        token: Some(TOKEN.to_string()),
        client_name: "it-tls".to_string(),
        tls: Trust::pinned(fingerprint).unwrap(),
        ..ConnectOptions::default()
    }
}

async fn connect_pinned(gw: &TestGateway, fingerprint: &str) -> Result<Client, ClientError> {
    tokio::time::timeout(WAIT, Client::connect(&gw.url, &pinned(fingerprint)))
        .await
        .expect("connect within the wait limit")
}

fn port(gw: &TestGateway) -> String {
    gw.url.rsplit(':').next().unwrap().to_string()
}

fn curl(dir: &Path, args: &[&str]) -> Output {
    run("curl", &[&["-sS", "--max-time", "5"], args].concat(), dir)
}

/// The fingerprint of the certificate an `openssl s_client` handshake saw.
fn served_fingerprint(gw: &TestGateway) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        port(gw)
    );
    let out = run("sh", &["-c", &script], &gw.dir);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_default()
}

fn wrong(fingerprint: &str) -> String {
    let flipped = if fingerprint.starts_with('0') {
        "1"
    } else {
        "0"
    };
    format!("{flipped}{}", &fingerprint[1..])
}

async fn tls_health(client: &mut Client) -> Value {
    client.call("health", serde_json::json!({})).await.unwrap()["tls"].clone()
}

#[tokio::test]
async fn a_self_signed_gateway_is_reached_by_openssl_curl_the_cli_and_pinned_sdks() {
    let dir = temp_dir("tls-auto");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!("{}[gateway.tls]\nenabled = true\n", token_config()),
    )
    .unwrap();
    let mut gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    assert!(gw.url.starts_with("wss://127.0.0.1:"), "{}", gw.url);

    // The generated pair: in the state dir, the key readable by its owner only.
    let cert = dir.join("state/tls/gateway-cert.pem");
    let key = dir.join("state/tls/gateway-key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated key is private");
    let fingerprint = fingerprint_of(&cert);

    // status, health and config show give the fingerprint openssl computes.
    let mut client = connect_pinned(&gw, &fingerprint).await.expect("pinned");
    let status: Value = client.call("status", serde_json::json!({})).await.unwrap();
    assert_eq!(
        status["tls"]["fingerprint"],
        fingerprint.as_str(),
        "{status}"
    );
    assert_eq!(status["tls"]["generated"], true);
    assert_eq!(
        tls_health(&mut client).await["fingerprint"],
        fingerprint.as_str()
    );
    let shown = run(
        bin(),
        &[
            "config",
            "show",
            "gateway.tls",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            dir.join("state").to_str().unwrap(),
        ],
        &dir,
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("fingerprint: {fingerprint}")),
        "{shown}"
    );

    // openssl: TLS 1.3 and 1.2 with ALPN http/1.1, verified against the
    // certificate itself; nothing older.
    let target = format!("127.0.0.1:{}", port(&gw));
    for version in ["-tls1_3", "-tls1_2"] {
        let out = run(
            "openssl",
            &[
                "s_client",
                "-connect",
                &target,
                version,
                "-alpn",
                "http/1.1",
                "-CAfile",
                cert.to_str().unwrap(),
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
            ],
            &dir,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{version}: {text}"
        );
        assert!(
            text.contains("ALPN protocol: http/1.1"),
            "{version}: {text}"
        );
    }
    let old = run(
        "openssl",
        &["s_client", "-connect", &target, "-tls1_1"],
        &dir,
    );
    assert!(!old.status.success(), "TLS 1.1 is refused");

    // curl trusts it with --cacert, not without. No HSTS for a
    // self-signed pair: it would forbid clicking through the warning.
    let https = format!("https://localhost:{}/healthz", port(&gw));
    let ok = curl(
        &dir,
        &["-D", "-", "--cacert", cert.to_str().unwrap(), &https],
    );
    let text = String::from_utf8_lossy(&ok.stdout).to_lowercase();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!text.contains("strict-transport-security"), "{text}");
    assert!(text.contains("{\"ok\":true}"), "{text}");
    let untrusted = curl(&dir, &[&https]);
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl refuses an unknown issuer"
    );

    // Plain HTTP on the TLS port: a clear 400, not a hang.
    let started = Instant::now();
    let plain = curl(
        &dir,
        &["-i", &format!("http://127.0.0.1:{}/healthz", port(&gw))],
    );
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("use https:// or wss://"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // The Rust client: a wrong pin is refused before the token is sent,
    // no pin means the platform's verification, which refuses it.
    let refused = connect_pinned(&gw, &wrong(&fingerprint))
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("not the pinned"), "{refused}");
    let unpinned = ConnectOptions {
        token: Some(TOKEN.to_string()),
        ..ConnectOptions::default()
    };
    assert!(Client::connect(&gw.url, &unpinned).await.is_err());

    // The CLI over wss://, pinned.
    let cli = |pin: &str| {
        run(
            bin(),
            &[
                "call",
                "health",
                "--url",
                &gw.url,
                "--token",
                TOKEN,
                "--tls-fingerprint",
                pin,
            ],
            &dir,
        )
    };
    let out = cli(&fingerprint.replace(':', "").to_lowercase());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["state"], "ready");
    let out = cli(&wrong(&fingerprint));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the pinned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Python and TypeScript SDKs: pinned, wrong pin, no pin.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = run(
        "python3",
        &[
            root.join("tests/python/sdk_tls.py").to_str().unwrap(),
            &gw.url,
            TOKEN,
            &fingerprint,
        ],
        root,
    );
    let node = run(
        "node",
        &[
            "--experimental-websocket",
            root.join("tests/typescript/tls.mjs").to_str().unwrap(),
            &gw.url,
            TOKEN,
            &fingerprint,
        ],
        root,
    );
    for (name, out) in [("python", python), ("typescript", node)] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in ["pinned ok", "wrong pin refused", "unpinned refused"] {
            assert!(text.contains(line), "{name}: {text}");
        }
    }

    // A restart keeps the generated pair: pinned clients keep working.
    client.close().await;
    gw.terminate();
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    assert_eq!(fingerprint_of(&cert), fingerprint, "never overwritten");
    let mut client = connect_pinned(&gw, &fingerprint)
        .await
        .expect("pinned after a restart");
    assert_eq!(
        tls_health(&mut client).await["fingerprint"],
        fingerprint.as_str()
    );
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections_and_a_bad_one_is_refused() {
    let dir = temp_dir("tls-files");
    make_ca(&dir);
    let first = make_leaf(&dir, "first", true);
    let second = make_leaf(&dir, "second", false);
    std::fs::copy(&first, dir.join("server.crt")).unwrap();
    std::fs::copy(dir.join("first.key"), dir.join("server.key")).unwrap();
    let config = dir.join("clawgate.toml");
    // Relative paths: from the config file's directory.
    std::fs::write(
        &config,
        format!(
            "{}[gateway.limits]\nhttpHeaderTimeoutMs = 1000\n[gateway.tls]\nenabled = true\ncertPath = \"server.crt\"\nkeyPath = \"server.key\"\nwatchIntervalMs = 100\n",
            token_config().replace("port = 0\n", "port = 0\nallowedHosts = [\"gw.test\"]\n")
        ),
    )
    .unwrap();
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    let (fp1, fp2) = (fingerprint_of(&first), fingerprint_of(&second));

    // Normal verification against the CA (RSA key), by curl and openssl.
    let https = format!("https://localhost:{}/healthz", port(&gw));
    let ok = curl(&dir, &["-D", "-", "--cacert", "ca.pem", &https]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(served_fingerprint(&gw), fp1);
    // HSTS for a CA-issued pair reached by name, never for localhost or
    // an address (a browser would keep it for every port of the host).
    let text = String::from_utf8_lossy(&ok.stdout).to_lowercase();
    assert!(!text.contains("strict-transport-security"), "{text}");
    let by_name = curl(
        &dir,
        &[
            "-D",
            "-",
            "--cacert",
            "ca.pem",
            "--resolve",
            &format!("gw.test:{}:127.0.0.1", port(&gw)),
            &format!("https://gw.test:{}/healthz", port(&gw)),
        ],
    );
    let text = String::from_utf8_lossy(&by_name.stdout).to_lowercase();
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );
    assert!(
        text.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );

    // A connection that never finishes its handshake is closed at the
    // header timeout, silent or after the first byte.
    for first in [&b""[..], &[0x16][..]] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = Instant::now();
        let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{}", port(&gw)))
            .await
            .unwrap();
        tcp.write_all(first).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    let mut old = connect_pinned(&gw, &fp1)
        .await
        .expect("pinned to the first");
    assert_eq!(tls_health(&mut old).await["generated"], false);

    // A renewal (an ECDSA pair) lands on disk: new connections get it,
    // the open one carries on.
    save_file(
        &dir.join("server.crt"),
        &std::fs::read_to_string(&second).unwrap(),
    );
    save_file(
        &dir.join("server.key"),
        &std::fs::read_to_string(dir.join("second.key")).unwrap(),
    );
    let tls = wait_tls(&mut old, |tls| tls["fingerprint"] == fp2.as_str()).await;
    assert!(tls.get("lastError").is_none(), "{tls}");
    assert_eq!(served_fingerprint(&gw), fp2);
    let mut new = connect_pinned(&gw, &fp2)
        .await
        .expect("pinned to the second");
    assert!(
        connect_pinned(&gw, &fp1).await.is_err(),
        "the first is no longer served"
    );
    let ok = curl(&dir, &["--cacert", "ca.pem", &https]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // A corrupt key is refused with its file named; the pair in use stays.
    let key_path = dir.join("server.key");
    save_file(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    let tls = wait_tls(&mut new, |tls| tls.get("lastError").is_some()).await;
    let error = tls["lastError"].as_str().unwrap();
    assert!(error.contains("gateway.tls.keyPath"), "{error}");
    assert!(error.contains(key_path.to_str().unwrap()), "{error}");
    assert_eq!(tls["fingerprint"], fp2.as_str(), "{tls}");
    connect_pinned(&gw, &fp2).await.expect("still served");
    // So is a key that belongs to another certificate.
    save_file(
        &key_path,
        &std::fs::read_to_string(dir.join("first.key")).unwrap(),
    );
    let tls = wait_tls(&mut new, |tls| {
        tls["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("is not the key of the certificate"))
    })
    .await;
    assert_eq!(tls["fingerprint"], fp2.as_str(), "{tls}");
    assert_eq!(served_fingerprint(&gw), fp2);
    // Put right, the error goes.
    save_file(
        &key_path,
        &std::fs::read_to_string(dir.join("second.key")).unwrap(),
    );
    wait_tls(&mut new, |tls| tls.get("lastError").is_none()).await;
    assert!(old.call("health", serde_json::json!({})).await.is_ok());
}

async fn wait_tls(client: &mut Client, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = tls_health(client).await;
        if done(&tls) {
            return tls;
        }
        assert!(Instant::now() < deadline, "health never showed it: {tls}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let dir = temp_dir("tls-mtls");
    make_ca(&dir);
    make_leaf(&dir, "server", true);
    make_leaf(&dir, "client", false);
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}[gateway.tls]\nenabled = true\ncertPath = \"server.crt\"\nkeyPath = \"server.key\"\ncaPath = \"ca.pem\"\n",
            token_config()
        ),
    )
    .unwrap();
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    let https = format!("https://localhost:{}/healthz", port(&gw));
    let without = curl(&dir, &["--cacert", "ca.pem", &https]);
    assert!(
        !without.status.success(),
        "no client certificate, no service"
    );
    let with = curl(
        &dir,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            &https,
        ],
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with.stdout), "{\"ok\":true}");
    // The CLI presents one when told to.
    let pin = fingerprint_of(&dir.join("server.crt"));
    let cli = |extra: &[&str]| {
        let url = format!("wss://localhost:{}", port(&gw));
        let mut args = vec![
            "call",
            "health",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--tls-fingerprint",
            &pin,
        ];
        args.extend_from_slice(extra);
        run(bin(), &args, &dir)
    };
    let out = cli(&[
        "--tls-client-cert",
        "client.crt",
        "--tls-client-key",
        "client.key",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !cli(&[]).status.success(),
        "the CLI without a certificate is refused"
    );
    let out = cli(&[
        "--tls-client-cert",
        "client.crt",
        "--tls-client-key",
        "server.key",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the key of the certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // So do the SDKs.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let url = format!("wss://localhost:{}", port(&gw));
    let (cert, key) = (dir.join("client.crt"), dir.join("client.key"));
    let sdk_args = [
        url.as_str(),
        TOKEN,
        &pin,
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ];
    let python = run(
        "python3",
        &[
            &[root.join("tests/python/sdk_mtls.py").to_str().unwrap()],
            &sdk_args[..],
        ]
        .concat(),
        root,
    );
    let node = run(
        "node",
        &[
            &[root.join("tests/typescript/mtls.mjs").to_str().unwrap()],
            &sdk_args[..],
        ]
        .concat(),
        root,
    );
    for (name, out) in [("python", python), ("typescript", node)] {
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Another CA's certificate is not enough.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_ca(&other);
    make_leaf(&other, "client", false);
    let foreign = curl(
        &dir,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            "other/client.crt",
            "--key",
            "other/client.key",
            &https,
        ],
    );
    assert!(!foreign.status.success());
}

/// Runs the gateway to its exit; returns its stderr.
fn start_fails(dir: &Path, toml: &str) -> String {
    let config = dir.join("clawgate.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("CLAWGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the gateway must not start");
    assert!(out.stdout.is_empty(), "it never listened");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_gateway_whose_pair_is_bad_does_not_start_and_says_which_file() {
    let dir = temp_dir("tls-bad");
    make_ca(&dir);
    make_leaf(&dir, "one", false);
    make_leaf(&dir, "two", false);
    let tls = |extra: &str| format!("{}[gateway.tls]\nenabled = true\n{extra}", token_config());

    let stderr = start_fails(
        &dir,
        &tls("certPath = \"one.crt\"\nkeyPath = \"two.key\"\n"),
    );
    assert!(
        stderr.contains("is not the key of the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("two.key"), "{stderr}");

    let stderr = start_fails(
        &dir,
        &tls("certPath = \"one.crt\"\nkeyPath = \"missing.key\"\n"),
    );
    assert!(stderr.contains("gateway.tls.keyPath"), "{stderr}");
    assert!(stderr.contains("missing.key"), "{stderr}");

    let stderr = start_fails(
        &dir,
        &tls("certPath = \"one.key\"\nkeyPath = \"one.key\"\n"),
    );
    assert!(stderr.contains("no certificate in the file"), "{stderr}");

    let stderr = start_fails(&dir, &tls("certPath = \"one.crt\"\n"));
    assert!(stderr.contains("gateway.tls.keyPath"), "{stderr}");

    let stderr = start_fails(&dir, &tls("autoGenerate = false\n"));
    assert!(stderr.contains("TLS needs a certificate"), "{stderr}");

    // A generated key without its certificate is not paired with a new one.
    let state = dir.join("state/tls");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(dir.join("one.key"), state.join("gateway-key.pem")).unwrap();
    let stderr = start_fails(&dir, &tls(""));
    assert!(stderr.contains("not overwritten"), "{stderr}");
    assert_eq!(
        std::fs::read(state.join("gateway-key.pem")).unwrap(),
        std::fs::read(dir.join("one.key")).unwrap()
    );
}

#[test]
fn listening_beyond_loopback_without_tls_warns_of_the_risk() {
    let dir = temp_dir("tls-plain");
    let config = dir.join("clawgate.toml");
    let toml = token_config().replace("port = 0\n", "port = 0\nhost = \"0.0.0.0\"\n");
    std::fs::write(&config, toml).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("CLAWGATE_LOG", "warn")
        .env_remove("CLAWGATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("listening on ws://0.0.0.0:"), "{line}");
    let port = line.trim().rsplit(':').next().unwrap();
    let plain = curl(
        &dir,
        &["-D", "-", &format!("http://127.0.0.1:{port}/healthz")],
    );
    let text = String::from_utf8_lossy(&plain.stdout).to_lowercase();
    assert!(text.contains("{\"ok\":true}"), "{text}");
    assert!(
        !text.contains("strict-transport-security"),
        "no HSTS without TLS: {text}"
    );
    unsafe_kill(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without TLS"), "{stderr}");
    assert!(stderr.contains("gateway.tls.enabled"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_control_ui_over_https_connects_with_wss_in_a_real_browser() {
    let dir = temp_dir("tls-browser");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!("{}[gateway.tls]\nenabled = true\n", token_config()),
    )
    .unwrap();
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    // Chromium trusts a certificate by its public key's SHA-256, base64.
    let spki = run(
        "sh",
        &[
            "-c",
            "openssl x509 -in state/tls/gateway-cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        ],
        &dir,
    );
    let spki = String::from_utf8_lossy(&spki.stdout).trim().to_string();
    let https = format!("https://localhost:{}", port(&gw));
    crate::browser::run_script(
        "tests/browser/tls.mjs",
        vec![https, TOKEN.to_string(), spki],
    )
    .await;
}

#[test]
fn the_cli_reaches_its_local_tls_gateway_from_the_config_alone() {
    let dir = temp_dir("tls-local");
    let config = dir.join("clawgate.toml");
    // A fixed port: the CLI finds the gateway by the config's port.
    let port = crate::tailscale::free_port();
    std::fs::write(
        &config,
        format!("{}[gateway.tls]\nenabled = true\n", token_config())
            .replace("port = 0", &format!("port = {port}")),
    )
    .unwrap();
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    assert_eq!(gw.url, format!("wss://127.0.0.1:{port}"));
    let out = run(
        bin(),
        &[
            "call",
            "status",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            dir.join("state").to_str().unwrap(),
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fingerprint = fingerprint_of(&dir.join("state/tls/gateway-cert.pem"));
    assert_eq!(
        status["tls"]["fingerprint"],
        fingerprint.as_str(),
        "pinned to its own certificate"
    );
}
