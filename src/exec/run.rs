//! Running an approved command on the gateway host: the exact argv, no
//! shell, a clean environment, a timeout that kills the whole process
//! group, and capped output.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Environment passed to commands: none of the gateway's own (it may
/// hold API keys and tokens), only what programs need to work.
const KEPT_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER"];

pub async fn on_host(
    argv: &[String],
    cwd: &Path,
    timeout: Duration,
    max_output: usize,
) -> Result<Value, String> {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(
            KEPT_ENV
                .iter()
                .filter_map(|k| Some((*k, std::env::var(k).ok()?))),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let pid = child.id();
    let stdout = capped(child.stdout.take(), max_output);
    let stderr = capped(child.stderr.take(), max_output);
    let waited = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(stdout, stderr, child.wait());
        (out, err, status)
    })
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match waited {
        Ok(((stdout, out_cut), (stderr, err_cut), status)) => {
            let status = status.map_err(|e| format!("waiting for {}: {e}", argv[0]))?;
            Ok(json!({
                "exitCode": status.code(),
                "stdout": stdout,
                "stderr": stderr,
                "truncated": out_cut || err_cut,
                "timedOut": false,
                "durationMs": duration_ms,
            }))
        }
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.kill().await;
            Ok(json!({
                "exitCode": null,
                "stdout": "",
                "stderr": format!("killed after {} ms", timeout.as_millis()),
                "truncated": false,
                "timedOut": true,
                "durationMs": duration_ms,
            }))
        }
    }
}

/// Reads a stream to its end, keeping the first `max` bytes; returns the
/// text and whether some was dropped.
async fn capped(stream: Option<impl AsyncRead + Unpin>, max: usize) -> (String, bool) {
    let Some(mut stream) = stream else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut dropped = false;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), dropped)
}

/// Kills the command's process group, so children it started die too.
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
