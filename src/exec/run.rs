//! Running an approved command on the gateway host: the exact argv, no
//! shell, a clean environment, a timeout, and capped output. Every
//! process the command starts carries a mark in its environment; when the
//! command ends or times out, whatever still carries the mark is killed,
//! so a child that left the process group (setsid) dies too.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Environment passed to commands: none of the gateway's own (it may
/// hold API keys and tokens), only what programs need to work.
const KEPT_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER"];
/// The variable that marks a run's processes.
const RUN_MARK: &str = "EXEC_RUN_MARK";
/// How long output that is still arriving is waited for once the command
/// is gone.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

pub async fn on_host(
    argv: &[String],
    cwd: &Path,
    timeout: Duration,
    max_output: usize,
) -> Result<Value, String> {
    let mark = uuid::Uuid::new_v4().simple().to_string();
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
        .env(RUN_MARK, &mark)
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
    let stdout = tokio::spawn(capped(child.stdout.take(), max_output));
    let stderr = tokio::spawn(capped(child.stderr.take(), max_output));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let timed_out = status.is_err();
    if let (true, Some(pid)) = (timed_out, pid) {
        // SAFETY: killpg only sends a signal. The group is the command's
        // own, and its leader is not reaped yet, so the id is not reused.
        unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
        let _ = child.kill().await;
    }
    let swept = tokio::task::spawn_blocking(move || kill_marked(&mark))
        .await
        .unwrap_or(0);
    if swept > 0 {
        tracing::info!(command = %argv[0], swept, "killed processes the command left behind");
    }
    let output = |reader: tokio::task::JoinHandle<(String, bool)>| async move {
        tokio::time::timeout(OUTPUT_GRACE, reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (stdout, out_cut) = output(stdout).await;
    let (stderr, err_cut) = output(stderr).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let exit_code = match status {
        Ok(status) => status
            .map_err(|e| format!("waiting for {}: {e}", argv[0]))?
            .code(),
        Err(_) => None,
    };
    let stderr = if timed_out {
        format!("{stderr}[killed after {} ms]", timeout.as_millis())
    } else {
        stderr
    };
    Ok(json!({
        "exitCode": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": out_cut || err_cut,
        "timedOut": timed_out,
        "durationMs": duration_ms,
    }))
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

/// Kills every process whose environment carries this run's mark, until
/// none is left (a dying parent may have just forked); returns how many.
fn kill_marked(mark: &str) -> usize {
    let needle = format!("{RUN_MARK}={mark}");
    let mut killed = 0;
    for _ in 0..10 {
        let found = marked_processes(&needle);
        if found.is_empty() {
            break;
        }
        for pid in found {
            // SAFETY: kill only sends a signal to a process that carries
            // this run's mark, i.e. one the command started.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    killed
}

fn marked_processes(needle: &str) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| !is_zombie(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Whether the process has exited and only waits to be reaped.
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
