use super::{scope_covers, types};
use std::net::IpAddr;
use std::sync::OnceLock;

/// What a successful connect grants a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: types::Role,
    pub scopes: Vec<types::Scope>,
}

impl Grant {
    pub fn allows(&self, needed: types::Scope) -> bool {
        self.scopes.iter().any(|held| scope_covers(*held, needed))
    }
}

/// The facts about the connection a call arrives on.
#[derive(Debug)]
pub struct CallContext {
    pub conn_id: String,
    pub remote_ip: IpAddr,
    grant: OnceLock<Grant>,
}

impl CallContext {
    pub fn new(conn_id: String, remote_ip: IpAddr) -> Self {
        CallContext {
            conn_id,
            remote_ip,
            grant: OnceLock::new(),
        }
    }

    /// The grant, once connect has succeeded.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.get()
    }

    /// Records the grant of a successful connect; false if one was already set.
    pub fn set_grant(&self, grant: Grant) -> bool {
        self.grant.set(grant).is_ok()
    }
}
