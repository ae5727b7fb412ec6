//! Device proofs: an OpenClaw client with a device identity signs the
//! connect facts and the connection's challenge with its Ed25519 key.

use super::error::V4Error;
use super::types::{ConnectDevice, ConnectErrorDetailCode as Detail};
use data_encoding::{BASE64, BASE64URL_NOPAD, BASE64_NOPAD};
use ring::signature::{UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// How far a proof's signedAt may be from the gateway's clock.
pub const SIGNATURE_SKEW_MS: u64 = 2 * 60 * 1000;

/// What the gateway sent first on the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    pub nonce: String,
    pub ts: u64,
}

/// The connect facts a proof covers, as the client sent them.
pub struct Signed<'a> {
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [String],
    /// The token the client authenticated with, if any.
    pub token: Option<&'a str>,
    pub platform: Option<&'a str>,
    pub device_family: Option<&'a str>,
}

/// A device whose proof held: its id and raw public key.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub id: String,
    pub public_key: [u8; 32],
}

/// Checks the proof in the order OpenClaw's gateway does and answers its
/// details codes: key, id, clock, nonce, signature (v3, then v2).
pub fn verify(
    device: &ConnectDevice,
    challenge: &Challenge,
    signed: &Signed<'_>,
    now_ms: u64,
) -> Result<Device, V4Error> {
    let public_key = decode_key(device.public_key.as_str()).ok_or_else(|| {
        V4Error::connect(
            Detail::DeviceAuthPublicKeyInvalid,
            "device public key invalid",
        )
        .with("reason", "device-public-key")
    })?;
    let id = hex::encode(Sha256::digest(public_key));
    if !id.eq_ignore_ascii_case(device.id.trim()) {
        return Err(V4Error::connect(
            Detail::DeviceAuthDeviceIdMismatch,
            "device identity mismatch",
        )
        .with("reason", "device-id-mismatch"));
    }
    if now_ms.abs_diff(device.signed_at) > SIGNATURE_SKEW_MS {
        return Err(V4Error::connect(
            Detail::DeviceAuthSignatureExpired,
            "device signature expired",
        )
        .with("reason", "device-signature-stale"));
    }
    let nonce = device.nonce.trim();
    if nonce.is_empty() {
        return Err(
            V4Error::connect(Detail::DeviceAuthNonceRequired, "device nonce required")
                .with("reason", "device-nonce-missing"),
        );
    }
    if nonce != challenge.nonce {
        return Err(
            V4Error::connect(Detail::DeviceAuthNonceMismatch, "device nonce mismatch")
                .with("reason", "device-nonce-mismatch"),
        );
    }
    let signature = decode_signature(device.signature.as_str());
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    let holds = |payload: String| {
        signature
            .as_ref()
            .is_some_and(|sig| key.verify(payload.as_bytes(), sig).is_ok())
    };
    if holds(payload_v3(&id, device.signed_at, nonce, signed))
        || holds(payload_v2(&id, device.signed_at, nonce, signed))
    {
        Ok(Device { id, public_key })
    } else {
        Err(V4Error::connect(
            Detail::DeviceAuthSignatureInvalid,
            "device signature invalid",
        )
        .with("reason", "device-signature"))
    }
}

/// `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce`
fn payload_v2(id: &str, signed_at: u64, nonce: &str, s: &Signed<'_>) -> String {
    [
        "v2",
        id,
        s.client_id,
        s.client_mode,
        s.role,
        &s.scopes.join(","),
        &signed_at.to_string(),
        s.token.unwrap_or(""),
        nonce,
    ]
    .join("|")
}

/// v2 followed by `|platform|deviceFamily`, trimmed and ASCII-lowercased.
fn payload_v3(id: &str, signed_at: u64, nonce: &str, s: &Signed<'_>) -> String {
    let v2 = payload_v2(id, signed_at, nonce, s);
    format!(
        "v3{}|{}|{}",
        &v2[2..],
        metadata(s.platform),
        metadata(s.device_family)
    )
}

fn metadata(value: Option<&str>) -> String {
    value.unwrap_or("").trim().to_ascii_lowercase()
}

/// A raw 32-byte Ed25519 key in base64url (or standard base64).
fn decode_key(text: &str) -> Option<[u8; 32]> {
    decode_b64(text.trim())?.try_into().ok()
}

fn decode_signature(text: &str) -> Option<Vec<u8>> {
    decode_b64(text.trim()).filter(|sig| sig.len() == 64)
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    BASE64URL_NOPAD
        .decode(unpadded.as_bytes())
        .or_else(|_| BASE64_NOPAD.decode(unpadded.as_bytes()))
        .or_else(|_| BASE64.decode(text.as_bytes()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    struct Key(Ed25519KeyPair);

    impl Key {
        fn new() -> Key {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Key(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }
        fn public(&self) -> String {
            BASE64URL_NOPAD.encode(self.0.public_key().as_ref())
        }
        fn id(&self) -> String {
            hex::encode(Sha256::digest(self.0.public_key().as_ref()))
        }
        fn device(&self, payload: &str, signed_at: u64, nonce: &str) -> ConnectDevice {
            serde_json::from_value(serde_json::json!({
                "id": self.id(),
                "publicKey": self.public(),
                "signature": BASE64URL_NOPAD.encode(self.0.sign(payload.as_bytes()).as_ref()),
                "signedAt": signed_at,
                "nonce": nonce,
            }))
            .unwrap()
        }
    }

    fn facts(scopes: &[String]) -> Signed<'_> {
        Signed {
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            token: Some("T"),
            platform: Some(" Linux "),
            device_family: None,
        }
    }

    fn detail(e: V4Error) -> String {
        e.details.unwrap()["code"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_v3_proof_over_the_challenge_holds_and_every_flaw_has_its_code() {
        let key = Key::new();
        let scopes = vec!["operator.read".to_string(), "operator.write".to_string()];
        let challenge = Challenge {
            nonce: "n-1".into(),
            ts: 1_000_000,
        };
        // The exact payload OpenClaw's client signs (platform lowercased).
        let payload = format!(
            "v3|{}|cli|cli|operator|operator.read,operator.write|1000000|T|n-1|linux|",
            key.id()
        );
        let good = key.device(&payload, 1_000_000, "n-1");
        let now = 1_000_000 + 5_000;
        assert_eq!(
            verify(&good, &challenge, &facts(&scopes), now).unwrap().id,
            key.id()
        );

        let v2 = format!(
            "v2|{}|cli|cli|operator|operator.read,operator.write|1000000|T|n-1",
            key.id()
        );
        assert!(verify(
            &key.device(&v2, 1_000_000, "n-1"),
            &challenge,
            &facts(&scopes),
            now
        )
        .is_ok());

        let late = now + SIGNATURE_SKEW_MS;
        assert_eq!(
            detail(verify(&good, &challenge, &facts(&scopes), late).unwrap_err()),
            "DEVICE_AUTH_SIGNATURE_EXPIRED"
        );
        let other = Challenge {
            nonce: "n-2".into(),
            ts: 1_000_000,
        };
        assert_eq!(
            detail(verify(&good, &other, &facts(&scopes), now).unwrap_err()),
            "DEVICE_AUTH_NONCE_MISMATCH"
        );
        let fewer = vec!["operator.read".to_string()];
        assert_eq!(
            detail(verify(&good, &challenge, &facts(&fewer), now).unwrap_err()),
            "DEVICE_AUTH_SIGNATURE_INVALID"
        );
        let mut wrong_id = good.clone();
        wrong_id.id = Key::new().id().parse().unwrap();
        assert_eq!(
            detail(verify(&wrong_id, &challenge, &facts(&scopes), now).unwrap_err()),
            "DEVICE_AUTH_DEVICE_ID_MISMATCH"
        );
        let mut bad_key = good.clone();
        bad_key.public_key = "c2hvcnQ".parse().unwrap();
        assert_eq!(
            detail(verify(&bad_key, &challenge, &facts(&scopes), now).unwrap_err()),
            "DEVICE_AUTH_PUBLIC_KEY_INVALID"
        );
    }
}
