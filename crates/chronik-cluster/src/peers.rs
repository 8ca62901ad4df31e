//! The `--cluster` peer list: `ID@HOST:PORT,...`, each node's Raft RPC address.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chronik_metadata::raft::NodeId;
use serde::{Deserialize, Serialize};

/// Most voters a peer list may name. Raft with more voters only gets slower.
pub const MAX_PEERS: usize = 9;

/// Node id -> RPC address (`host:port`). Ids are unique, addresses are unique, ids > 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList(pub BTreeMap<NodeId, String>);

impl FromStr for PeerList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut peers = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (id, addr) = item
                .split_once('@')
                .ok_or_else(|| format!("peer '{item}' is not ID@HOST:PORT"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("peer '{item}': node id '{id}' is not a number"))?;
            if id == 0 || id > i32::MAX as NodeId {
                return Err(format!(
                    "peer '{item}': node id must be between 1 and {}",
                    i32::MAX
                ));
            }
            let addr = addr.trim();
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("peer '{item}': address '{addr}' has no :PORT"))?;
            if host.is_empty() {
                return Err(format!("peer '{item}': address '{addr}' has no host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(format!("peer '{item}': port '{port}' is not a port number")),
            }
            if peers.values().any(|a: &String| a == addr) {
                return Err(format!("peer '{item}': address {addr} is listed twice"));
            }
            if peers.insert(id, addr.to_string()).is_some() {
                return Err(format!("peer '{item}': node id {id} is listed twice"));
            }
        }
        if peers.is_empty() {
            return Err("the peer list is empty".into());
        }
        if peers.len() > MAX_PEERS {
            return Err(format!(
                "{} peers is over the limit of {MAX_PEERS}",
                peers.len()
            ));
        }
        Ok(PeerList(peers))
    }
}

impl fmt::Display for PeerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(id, a)| format!("{id}@{a}")).collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let p: PeerList = "1@127.0.0.1:7001, 2@127.0.0.1:7002,3@h:7003"
            .parse()
            .unwrap();
        assert_eq!(p.0.len(), 3);
        assert_eq!(p.to_string(), "1@127.0.0.1:7001,2@127.0.0.1:7002,3@h:7003");
        for bad in [
            "",
            "1@a:1,1@b:2",
            "1@a:1,2@a:1",
            "x@a:1",
            "0@a:1",
            "1@a",
            "1@:5",
            "1@a:0",
            "1@a:99999",
            "1-a:1",
        ] {
            assert!(bad.parse::<PeerList>().is_err(), "{bad} parsed");
        }
    }
}
