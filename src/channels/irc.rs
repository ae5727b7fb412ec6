//! IRC: one connection (plain or TLS) that registers, joins the
//! configured channels, answers PINGs, and hands private messages and
//! channel messages to the pipeline; replies go out as PRIVMSG lines.

use super::inbound::{Inbound, Reply};
use super::{Account, Link};
use crate::protocol::types::IrcAccount;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::sync::mpsc;

/// Room left for the server's prefix in a 512-byte IRC line.
pub const MAX_LINE_CHARS: usize = 400;
/// A server that stays silent this long (not even a PING) is gone.
const SILENCE: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn open(config: &IrcAccount) -> Result<Box<dyn Stream>, String> {
    let host = config.server.as_str();
    let port = config
        .port
        .map(|p| p.get() as u16)
        .unwrap_or(if config.tls { 6697 } else { 6667 });
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| format!("connecting to {host}:{port} timed out"))?
    .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    if !config.tls {
        return Ok(Box::new(tcp));
    }
    use rustls_platform_verifier::ConfigVerifierExt;
    crate::agent::http_client(); // installs the process's crypto provider
    let tls = rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    Ok(Box::new(stream))
}

pub async fn run(link: &Link, config: &IrcAccount) -> Result<(), String> {
    let stream = open(config).await?;
    let (read, mut write) = tokio::io::split(stream);
    let (lines, mut outgoing) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(line) = outgoing.recv().await {
            let line = format!("{}\r\n", line.replace(['\r', '\n'], " "));
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let result = session(link, config, read, &lines).await;
    if result.is_ok() {
        let _ = lines.send("QUIT :stopping".to_string()).await;
    }
    drop(lines);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    result
}

async fn session(
    link: &Link,
    config: &IrcAccount,
    read: impl AsyncRead + Unpin,
    lines: &mpsc::Sender<String>,
) -> Result<(), String> {
    let send = |line: String| async move {
        lines
            .send(line)
            .await
            .map_err(|_| "the connection's writer stopped".to_string())
    };
    if let Some(password) = &config.password {
        send(format!("PASS {password}")).await?;
    }
    let mut nick = config.nick.to_string();
    send(format!("NICK {nick}")).await?;
    send(format!("USER {nick} 0 * :clawgate")).await?;
    let policy = Account::Irc(config.clone()).policy();
    let mut reader = BufReader::new(read);
    let mut buffer = Vec::new();
    loop {
        let line = tokio::select! {
            line = tokio::time::timeout(SILENCE, next_line(&mut reader, &mut buffer)) => line,
            _ = link.stopped() => return Ok(()),
        };
        let line = match line {
            Err(_) => return Err("the server went silent".into()),
            Ok(Err(e)) => return Err(format!("reading from the server: {e}")),
            Ok(Ok(None)) => return Err("the server closed the connection".into()),
            Ok(Ok(Some(line))) => line,
        };
        let message = parse(&line);
        match message.command {
            "PING" => send(format!("PONG :{}", message.trailing)).await?,
            "001" => {
                link.connected();
                link.can_send(Reply::Irc(Replier {
                    lines: lines.clone(),
                    target: String::new(),
                }));
                for channel in &config.channels {
                    send(format!("JOIN {}", channel.as_str())).await?;
                }
            }
            // Nick in use: try another.
            "433" => {
                nick.push('_');
                send(format!("NICK {nick}")).await?;
            }
            "ERROR" => return Err(format!("the server said: {}", message.trailing)),
            "PRIVMSG" => {
                // The nick names who to answer; the whole prefix
                // (nick!user@host) is who it is, for allowFrom.
                let Some(sender) = message.prefix.split('!').next().filter(|s| !s.is_empty())
                else {
                    continue;
                };
                let target = message.params.first().copied().unwrap_or_default();
                let to_me = target.eq_ignore_ascii_case(&nick);
                let (text, mentioned) = addressed(message.trailing, &nick);
                let inbound = Inbound {
                    from: message.prefix.to_string(),
                    peer: sender.to_string(),
                    group: (!to_me).then(|| target.to_string()),
                    text,
                    mentioned,
                };
                let reply = Reply::Irc(Replier {
                    lines: lines.clone(),
                    target: if to_me { sender } else { target }.to_string(),
                });
                let _ = link.dispatch(&policy, inbound, reply);
            }
            _ => {}
        }
    }
}

/// The longest line taken from a server: 512 bytes, plus up to 8 KiB of
/// IRCv3 tags, with room to spare. A longer one ends the connection
/// instead of growing a buffer without end.
const MAX_READ_LINE: usize = 16 * 1024;

/// The next line from the server, without its line end; None at the end.
async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    buffer.clear();
    let read = (&mut *reader)
        .take(MAX_READ_LINE as u64 + 1)
        .read_until(b'\n', buffer)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if buffer.len() > MAX_READ_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the server sent a line longer than {MAX_READ_LINE} bytes"),
        ));
    }
    let line = String::from_utf8_lossy(buffer);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// One IRC line: `[:prefix] COMMAND params… [:trailing]`.
struct Message<'a> {
    prefix: &'a str,
    command: &'a str,
    params: Vec<&'a str>,
    trailing: &'a str,
}

fn parse(line: &str) -> Message<'_> {
    let (prefix, rest) = match line.strip_prefix(':') {
        Some(rest) => rest.split_once(' ').unwrap_or((rest, "")),
        None => ("", line),
    };
    let (head, trailing) = match rest.split_once(" :") {
        Some((head, trailing)) => (head, trailing),
        None => (rest, ""),
    };
    let mut words = head.split_whitespace();
    let command = words.next().unwrap_or_default();
    Message {
        prefix,
        command,
        params: words.collect(),
        trailing,
    }
}

/// Whether a channel message is for `nick` ("nick: …", "nick, …" or the
/// nick as a word), and its text without the address.
fn addressed(text: &str, nick: &str) -> (String, bool) {
    for sep in [':', ','] {
        if let Some(rest) = text
            .get(..nick.len())
            .filter(|head| head.eq_ignore_ascii_case(nick))
            .and_then(|_| text[nick.len()..].strip_prefix(sep))
        {
            return (rest.trim().to_string(), true);
        }
    }
    let named = text
        .split(|c: char| !(c.is_alphanumeric() || "_-[]\\`^{}|".contains(c)))
        .any(|word| word.eq_ignore_ascii_case(nick));
    (text.to_string(), named)
}

/// Sends a reply as PRIVMSG lines to a nick or a channel.
#[derive(Clone)]
pub struct Replier {
    lines: mpsc::Sender<String>,
    target: String,
}

impl Replier {
    /// The nick or channel it answers.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// The same connection, writing to the nick or channel `to`.
    pub fn retarget(&self, to: &str) -> Result<Replier, String> {
        if to.is_empty() || to.contains([' ', '\r', '\n', ',']) {
            return Err(format!("{to:?} is not an IRC nick or channel"));
        }
        Ok(Replier {
            lines: self.lines.clone(),
            target: to.to_string(),
        })
    }

    pub async fn send(&self, text: &str) -> Result<(), String> {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            for piece in super::inbound::split(line, MAX_LINE_CHARS) {
                self.lines
                    .send(format!("PRIVMSG {} :{piece}", self.target))
                    .await
                    .map_err(|_| "the IRC connection is gone".to_string())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_prefix_command_params_and_trailing() {
        let m = parse(":alice!a@host PRIVMSG #home :claw: hello there");
        assert_eq!(m.prefix, "alice!a@host");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#home"]);
        assert_eq!(m.trailing, "claw: hello there");
        let ping = parse("PING :irc.local");
        assert_eq!((ping.command, ping.trailing), ("PING", "irc.local"));
        let welcome = parse(":irc.local 001 claw :Welcome");
        assert_eq!((welcome.command, welcome.params[0]), ("001", "claw"));
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_connection() {
        let mut long = vec![b'x'; MAX_READ_LINE * 3];
        long.extend_from_slice(b"\r\nPING :x\r\n");
        let mut reader = BufReader::new(&long[..]);
        let mut buffer = Vec::new();
        assert!(next_line(&mut reader, &mut buffer).await.is_err());
        let mut reader = BufReader::new(&b"PING :a\r\nPONG"[..]);
        assert_eq!(
            next_line(&mut reader, &mut buffer).await.unwrap().unwrap(),
            "PING :a"
        );
        assert_eq!(
            next_line(&mut reader, &mut buffer).await.unwrap().unwrap(),
            "PONG"
        );
        assert!(next_line(&mut reader, &mut buffer).await.unwrap().is_none());
    }

    #[test]
    fn mentions_are_found_and_stripped() {
        assert_eq!(addressed("claw: hi", "claw"), ("hi".into(), true));
        assert_eq!(addressed("CLAW, hi", "claw"), ("hi".into(), true));
        assert_eq!(addressed("hey claw!", "claw"), ("hey claw!".into(), true));
        assert_eq!(
            addressed("clawing around", "claw"),
            ("clawing around".into(), false)
        );
    }
}
