//! The offline echo agent: answers with the user's message, streamed a
//! word at a time (about a thousand words a second, so clients see a real
//! stream), so the gateway can be tried with no key and no network.

use super::Reply;
use crate::protocol::types::{ChatResultStopReason, Usage};
use std::time::Duration;

const WORD_INTERVAL: Duration = Duration::from_millis(1);

pub async fn reply(message: &str, on_delta: &mut super::OnDelta<'_>) -> Reply {
    for piece in message.split_inclusive(char::is_whitespace) {
        on_delta(super::Delta::Text(piece));
        tokio::time::sleep(WORD_INTERVAL).await;
    }
    let words = message.split_whitespace().count() as u64;
    Reply {
        text: message.to_string(),
        usage: Usage {
            input_tokens: words,
            output_tokens: words,
        },
        stop_reason: ChatResultStopReason::Stop,
    }
}
