//! `clawgate discover`: the gateways that answer on the local network.

use crate::discovery;
use std::process::ExitCode;
use std::time::Duration;

pub fn discover(timeout_ms: u64, json: bool, openclaw: bool) -> ExitCode {
    let service = if openclaw {
        discovery::OPENCLAW_SERVICE_TYPE
    } else {
        discovery::SERVICE_TYPE
    };
    let found = match discovery::browse(service, Duration::from_millis(timeout_ms)) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        let out = serde_json::json!({ "gateways": found });
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    if found.is_empty() {
        eprintln!(
            "no gateway answered within {timeout_ms} ms (a gateway advertises itself only when it listens beyond loopback)"
        );
        return ExitCode::SUCCESS;
    }
    for gateway in &found {
        let url = gateway.ws_url.as_deref().unwrap_or("(no address)");
        println!("{}  {url}  host {}", gateway.name, gateway.host);
        let txt: Vec<String> = gateway
            .txt
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("    {}", txt.join(" "));
    }
    ExitCode::SUCCESS
}
