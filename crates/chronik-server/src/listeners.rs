//! Kafka listeners: where the broker accepts clients and with which security protocol, in
//! Kafka's syntax (`listeners=PLAINTEXT://host:port,SSL://host:port`) and with Kafka's default
//! `listener.security.protocol.map`: a listener's name is its security protocol. What each
//! listener advertises to clients comes from `--advertised-listeners` (same names), else from
//! the address it bound.
//!
//! `--kafka-addr` is the short form of one PLAINTEXT listener, and `--advertised-addr` of its
//! advertised address.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::settings::ConfigError;

/// Kafka's security protocols, which are also the listener names here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name, which is also the listener's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn parse(name: &str) -> Result<SecurityProtocol, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown listener name '{name}' (the names are the security protocols: \
                     PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
                )
            })
    }
}

/// One listener to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: SecurityProtocol,
    /// Where it binds; port 0 lets the OS pick.
    pub addr: SocketAddr,
    /// Connections start with a TLS handshake (SSL, SASL_SSL).
    pub tls: bool,
    /// Clients must authenticate with SASL (SASL_PLAINTEXT, SASL_SSL).
    pub sasl: bool,
    /// HOST:PORT given to clients that came in on this listener; `None`: the bound address.
    /// A port of 0 here means "the bound port" (from `--advertised-addr HOST`).
    pub advertised: Option<(String, u16)>,
}

impl Listener {
    pub fn name(&self) -> &'static str {
        self.protocol.name()
    }

    /// The host and port clients are told, given the address this listener bound.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> (String, i32) {
        match &self.advertised {
            Some((host, 0)) => (host.clone(), bound.port() as i32),
            Some((host, port)) => (host.clone(), *port as i32),
            None => (bound.ip().to_string(), bound.port() as i32),
        }
    }
}

/// The certificate files of the TLS listeners (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, TLS clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// The listener flags (part of `ServerArgs`), before validation.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenerArgs {
    /// Address of a single PLAINTEXT Kafka listener (the short form of --listeners
    /// PLAINTEXT://ADDR); port 0 lets the OS pick
    #[arg(long, env = "CHRONIK_KAFKA_ADDR")]
    #[arg(default_value = "127.0.0.1:9092", conflicts_with = "listeners")]
    pub kafka_addr: SocketAddr,
    /// HOST[:PORT] given to clients in Metadata, with a single listener (the short form of
    /// --advertised-listeners). Unset: the bound Kafka address
    #[arg(long, env = "CHRONIK_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Kafka listeners, Kafka's syntax: NAME://HOST:PORT,... where the name is the security
    /// protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); port 0 lets the OS pick, an empty
    /// host binds every interface. Instead of --kafka-addr. Unset: one PLAINTEXT listener on
    /// --kafka-addr
    #[arg(long, env = "CHRONIK_LISTENERS")]
    pub listeners: Option<String>,
    /// NAME://HOST:PORT,... given to clients in Metadata, per listener they came in on.
    /// Unset: each listener's bound address
    #[arg(long, env = "CHRONIK_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Certificate chain (PEM) of SSL and SASL_SSL listeners; reloaded on SIGHUP
    #[arg(long, env = "CHRONIK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded on SIGHUP
    #[arg(long, env = "CHRONIK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): SSL listeners then require a client certificate signed by one
    /// of them, whose subject CN is the principal (User:CN); reloaded on SIGHUP. Unset: no
    /// client certificate, principal User:ANONYMOUS
    #[arg(long, env = "CHRONIK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// The defaults of the definition above.
impl Default for ListenerArgs {
    fn default() -> Self {
        crate::settings::defaults()
    }
}

/// The validated listeners and, if any of them is a TLS one, its certificate files.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Never empty; the first one is the one the ready line reports as `kafka=`.
    pub listeners: Vec<Listener>,
    pub tls: Option<TlsFiles>,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl ListenerConfig {
    pub fn resolve(a: ListenerArgs) -> Result<ListenerConfig, ConfigError> {
        // Given both, clap refuses --kafka-addr (`conflicts_with`), so it is the default here.
        let mut listeners = match &a.listeners {
            Some(s) => parse_listeners(s).map_err(|r| invalid("listeners", r))?,
            None => vec![listener(SecurityProtocol::Plaintext, a.kafka_addr)],
        };
        match (&a.advertised_listeners, &a.advertised_addr) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "advertised-listeners",
                    "give either --advertised-listeners or --advertised-addr, not both",
                ))
            }
            (Some(s), None) => {
                for (protocol, host, port) in
                    parse_advertised(s).map_err(|r| invalid("advertised-listeners", r))?
                {
                    let l = listeners
                        .iter_mut()
                        .find(|l| l.protocol == protocol)
                        .ok_or_else(|| {
                            invalid(
                                "advertised-listeners",
                                format!("{} is not one of the listeners", protocol.name()),
                            )
                        })?;
                    l.advertised = Some((host, port));
                }
            }
            (None, Some(addr)) => {
                if listeners.len() > 1 {
                    return Err(invalid(
                        "advertised-addr",
                        "with several listeners, give --advertised-listeners instead",
                    ));
                }
                let (host, port) =
                    parse_host_port(addr, 0).map_err(|r| invalid("advertised-addr", r))?;
                listeners[0].advertised = Some((host, port as u16));
            }
            (None, None) => {}
        }
        let tls = tls_files(&listeners, a.tls_cert, a.tls_key, a.tls_client_ca)?;
        Ok(ListenerConfig { listeners, tls })
    }
}

/// The certificate files, required when a TLS listener exists and refused otherwise (a
/// certificate nobody uses is a misconfiguration an operator wants to hear about).
fn tls_files(
    listeners: &[Listener],
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let any_tls = listeners.iter().any(|l| l.tls);
    match (any_tls, cert, key) {
        (true, Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (true, _, _) => Err(invalid(
            "tls-cert",
            "an SSL or SASL_SSL listener needs --tls-cert and --tls-key (PEM files)",
        )),
        (false, None, None) if client_ca.is_none() => Ok(None),
        (false, _, _) => Err(invalid(
            "tls-cert",
            "--tls-cert, --tls-key and --tls-client-ca apply to SSL and SASL_SSL listeners, \
             and there is none in --listeners",
        )),
    }
}

fn listener(protocol: SecurityProtocol, addr: SocketAddr) -> Listener {
    Listener {
        protocol,
        addr,
        tls: protocol.tls(),
        sasl: protocol.sasl(),
        advertised: None,
    }
}

/// Splits `NAME://HOST:PORT` into its name and address.
fn split_entry(entry: &str) -> Result<(SecurityProtocol, &str), String> {
    let (name, addr) = entry
        .split_once("://")
        .ok_or_else(|| format!("'{entry}' is not NAME://HOST:PORT"))?;
    Ok((SecurityProtocol::parse(name)?, addr))
}

fn entries(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Parses `--listeners`. An empty host binds every interface (as in Kafka); a host name is
/// resolved once, here.
pub fn parse_listeners(s: &str) -> Result<Vec<Listener>, String> {
    let mut out: Vec<Listener> = Vec::new();
    for entry in entries(s) {
        let (protocol, addr) = split_entry(entry)?;
        if out.iter().any(|l| l.protocol == protocol) {
            return Err(format!("listener {} is given twice", protocol.name()));
        }
        let (host, port) = split_host_port(addr)?;
        let port = port.ok_or_else(|| format!("'{entry}' has no port"))?;
        let host = if host.is_empty() { "0.0.0.0" } else { &host };
        let ip = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve '{host}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{host}' resolves to no address"))?;
        out.push(listener(protocol, ip));
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}

/// Parses `--advertised-listeners`: name, host and port of each (the port is required and not 0).
fn parse_advertised(s: &str) -> Result<Vec<(SecurityProtocol, String, u16)>, String> {
    let mut out: Vec<(SecurityProtocol, String, u16)> = Vec::new();
    for entry in entries(s) {
        let (protocol, addr) = split_entry(entry)?;
        if out.iter().any(|(p, _, _)| *p == protocol) {
            return Err(format!("listener {} is given twice", protocol.name()));
        }
        match split_host_port(addr)? {
            (host, Some(port)) if !host.is_empty() && port != 0 => out.push((protocol, host, port)),
            _ => return Err(format!("'{entry}' needs a host and a port other than 0")),
        }
    }
    Ok(out)
}

/// Parses `HOST` or `HOST:PORT` (IPv6 as `[::1]:9092`); a missing port is `default_port`.
pub(crate) fn parse_host_port(s: &str, default_port: u16) -> Result<(String, i32), String> {
    let (host, port) = split_host_port(s)?;
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok((host, port.unwrap_or(default_port) as i32))
}

/// Splits `HOST`, `HOST:PORT` or `:PORT` (an empty host); IPv6 as `[::1]:9092`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if s.is_empty() {
        return Err("empty address".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), p),
            None if after.is_empty() => return Ok((h.to_string(), None)),
            None => return Err(format!("unexpected '{after}' after IPv6 address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => return Ok((s.to_string(), None)),
        }
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port '{port}'"))?;
    Ok((host, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listeners: &str) -> ListenerArgs {
        ListenerArgs {
            listeners: Some(listeners.into()),
            ..Default::default()
        }
    }

    #[test]
    fn kafka_syntax() {
        let l = parse_listeners("PLAINTEXT://127.0.0.1:9092, ssl://127.0.0.1:0").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[0].addr, "127.0.0.1:9092".parse().unwrap());
        assert!(!l[0].tls && !l[0].sasl);
        assert_eq!(l[1].name(), "SSL");
        assert!(l[1].tls && !l[1].sasl);
        let l = parse_listeners("SASL_SSL://[::1]:1,SASL_PLAINTEXT://:2").unwrap();
        assert!(l[0].tls && l[0].sasl);
        assert_eq!(l[0].addr, "[::1]:1".parse().unwrap());
        assert_eq!(l[1].addr, "0.0.0.0:2".parse().unwrap());
        assert!(!l[1].tls && l[1].sasl);
        assert_eq!(
            parse_listeners("PLAINTEXT://localhost:5").unwrap()[0]
                .addr
                .port(),
            5
        );
    }

    #[test]
    fn kafka_syntax_errors() {
        for bad in [
            "",
            "127.0.0.1:9092",
            "FOO://127.0.0.1:1",
            "PLAINTEXT://127.0.0.1",
            "PLAINTEXT://127.0.0.1:x",
            "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
        ] {
            assert!(parse_listeners(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn kafka_addr_is_the_short_form() {
        let c = ListenerConfig::resolve(ListenerArgs {
            kafka_addr: "127.0.0.1:7".parse().unwrap(),
            advertised_addr: Some("kafka.example".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].protocol, SecurityProtocol::Plaintext);
        let bound = "127.0.0.1:7".parse().unwrap();
        assert_eq!(
            c.listeners[0].advertised_endpoint(bound),
            ("kafka.example".to_string(), 7)
        );
        let d = ListenerConfig::resolve(ListenerArgs::default()).unwrap();
        assert_eq!(d.listeners[0].addr, "127.0.0.1:9092".parse().unwrap());
        let _env = crate::config::tests::ENV.lock();
        let both = [
            "standalone",
            "--kafka-addr",
            "127.0.0.1:7",
            "--listeners",
            "SSL://:8",
        ];
        let err = crate::config::tests::load(&both).unwrap_err().to_string();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn advertised_listeners() {
        let c = ListenerConfig::resolve(ListenerArgs {
            advertised_listeners: Some("SSL://broker1.example:9093".into()),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..args("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0")
        })
        .unwrap();
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            c.listeners[0].advertised_endpoint(bound),
            ("127.0.0.1".into(), 4000)
        );
        assert_eq!(
            c.listeners[1].advertised_endpoint(bound),
            ("broker1.example".into(), 9093)
        );
        assert!(c.tls.is_some());
        for bad in ["SSL://h:9093", "PLAINTEXT://h", "PLAINTEXT://h:0"] {
            let a = ListenerArgs {
                advertised_listeners: Some(bad.into()),
                ..args("PLAINTEXT://127.0.0.1:0")
            };
            assert!(ListenerConfig::resolve(a).is_err(), "{bad}");
        }
        let a = ListenerArgs {
            advertised_addr: Some("h".into()),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..args("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0")
        };
        assert!(ListenerConfig::resolve(a).is_err());
    }

    #[test]
    fn tls_files_required_exactly_with_tls_listeners() {
        assert!(ListenerConfig::resolve(args("SSL://127.0.0.1:0")).is_err());
        let cert_without_tls = ListenerArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..args("PLAINTEXT://127.0.0.1:0")
        };
        assert!(ListenerConfig::resolve(cert_without_tls).is_err());
    }

    #[test]
    fn host_port() {
        assert_eq!(
            parse_host_port("kafka.local", 9092).unwrap(),
            ("kafka.local".into(), 9092)
        );
        assert_eq!(parse_host_port("h:1", 9092).unwrap(), ("h".into(), 1));
        assert_eq!(parse_host_port("[::1]:5", 9092).unwrap(), ("::1".into(), 5));
        assert!(parse_host_port("h:x", 1).is_err());
        assert!(parse_host_port(":1", 1).is_err());
    }
}
