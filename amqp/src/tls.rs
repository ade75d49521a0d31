//! TLS to RabbitMQ. An `amqps://` URL alone is checked against the system's CAs (lapin's
//! default); [`AmqpTlsArgs`] add a CA file trusted instead of them and a client certificate, read
//! and checked once at start-up into an [`AmqpTls`] that every connection (and reconnection) uses.

use std::io;
use std::path::{Path, PathBuf};

use lapin::tcp::{HandshakeResult, RustlsConnector, RustlsConnectorConfig, TcpStream};
use lapin::uri::{AMQPScheme, AMQPUri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS flags of a process that talks to RabbitMQ (each also read from an environment
/// variable). Put them in a binary's arguments with `#[command(flatten)]`, then
/// [`load`](AmqpTlsArgs::load) them at start-up.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AmqpTlsArgs {
    /// PEM file of the CA certificate(s) that RabbitMQ's certificate must chain to, trusted
    /// instead of the system's CAs. Needs an `amqps://` URL.
    #[arg(
        long = "amqp-ca-file",
        env = "SAGAFLOW_AMQP_CA_FILE",
        value_name = "PEM"
    )]
    pub ca_file: Option<PathBuf>,

    /// PEM file of the client certificate (chain) shown to RabbitMQ, with --amqp-client-key.
    #[arg(
        long = "amqp-client-cert",
        env = "SAGAFLOW_AMQP_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(
        long = "amqp-client-key",
        env = "SAGAFLOW_AMQP_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

/// How connections to RabbitMQ are encrypted, from [`AmqpTlsArgs::load`]. The default uses
/// lapin's own TLS for `amqps://` URLs (the system's CAs, no client certificate).
#[derive(Clone, Default)]
pub struct AmqpTls {
    /// Set when a CA file or a client certificate was given.
    connector: Option<RustlsConnector>,
}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: only whether files were configured.
        f.debug_struct("AmqpTls")
            .field("custom", &self.connector.is_some())
            .finish()
    }
}

/// The TLS settings for RabbitMQ cannot be used. The process cannot start: fix the file or the
/// setting named.
#[derive(Debug, thiserror::Error)]
pub enum AmqpTlsError {
    /// A file cannot be read.
    #[error("cannot read {setting} file {path}: {source}")]
    Read {
        /// The environment variable naming the file.
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{setting} file {path} holds no {expected}: {reason}")]
    Pem {
        setting: &'static str,
        path: PathBuf,
        /// E.g. "PEM certificate".
        expected: &'static str,
        reason: String,
    },
    /// rustls refused the client certificate and key (a key that does not fit the certificate,
    /// an unsupported algorithm).
    #[error("the client certificate {cert} and key {key} cannot be used: {reason}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// The system's CA certificates cannot be loaded (needed with a client certificate and no
    /// CA file).
    #[error("cannot load the system's CA certificates: {0}. Set SAGAFLOW_AMQP_CA_FILE")]
    NativeRoots(#[source] io::Error),
    /// TLS files were given but the URL is not `amqps://`: the connection would not be
    /// encrypted.
    #[error("{setting} is set but the RabbitMQ URL {url} is not amqps://; use an amqps:// URL (port 5671 by default) or unset {setting}")]
    NotAmqps {
        setting: &'static str,
        /// Without its password.
        url: String,
    },
}

const CA_FILE: &str = "SAGAFLOW_AMQP_CA_FILE";
const CLIENT_CERT: &str = "SAGAFLOW_AMQP_CLIENT_CERT";
const CLIENT_KEY: &str = "SAGAFLOW_AMQP_CLIENT_KEY";

impl AmqpTlsArgs {
    /// Reads and checks the files for connections to every URL of `amqp_url`, so that a wrong
    /// setting stops the process at start-up rather than at its first reconnection.
    pub fn load(&self, amqp_url: &str) -> Result<AmqpTls, AmqpTlsError> {
        let setting = match (&self.ca_file, &self.client_cert) {
            (Some(_), _) => CA_FILE,
            (None, Some(_)) => CLIENT_CERT,
            (None, None) => return Ok(AmqpTls::default()),
        };
        for url in crate::urls(amqp_url) {
            if !url
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("amqps://")
            {
                return Err(AmqpTlsError::NotAmqps {
                    setting,
                    url: crate::redact(url),
                });
            }
        }
        let mut roots = match &self.ca_file {
            Some(path) => {
                let mut roots = RustlsConnectorConfig::default();
                let (added, _) = roots.add_parsable_certificates(read_certificates(CA_FILE, path)?);
                if added == 0 {
                    return Err(pem_error(
                        CA_FILE,
                        path,
                        "CA certificate",
                        "none could be parsed",
                    ));
                }
                roots
            }
            None => native_roots()?,
        };
        let connector = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(CLIENT_CERT, cert)?;
                let private_key = read_private_key(key)?;
                std::mem::take(&mut roots)
                    .connector_with_single_cert(chain, private_key)
                    .map_err(|e| AmqpTlsError::Identity {
                        cert: cert.clone(),
                        key: key.clone(),
                        reason: e.to_string(),
                    })?
            }
            // clap's `requires` makes these pairs; a caller building the args by hand gets the
            // same answer.
            (Some(cert), None) | (None, Some(cert)) => {
                return Err(AmqpTlsError::Identity {
                    cert: cert.clone(),
                    key: PathBuf::new(),
                    reason: format!("set both {CLIENT_CERT} and {CLIENT_KEY}"),
                })
            }
            (None, None) => roots.connector_with_no_client_auth(),
        };
        Ok(AmqpTls {
            connector: Some(connector),
        })
    }
}

/// What lapin's `Connection::connector` calls to open the socket.
pub(crate) type Handshake = Box<dyn FnOnce(&AMQPUri) -> HandshakeResult + Send + Sync>;

impl AmqpTls {
    /// Opens `uri` with this configuration, or `None` to leave it to lapin's default.
    // The large error is lapin's own `HandshakeResult`.
    #[allow(clippy::result_large_err)]
    pub(crate) fn handshake(&self) -> Option<Handshake> {
        let connector = self.connector.clone()?;
        Some(Box::new(move |uri: &AMQPUri| {
            // As lapin's own connector (amq-protocol-tcp), with our rustls configuration.
            let address = format!("{}:{}", uri.authority.host, uri.authority.port);
            let stream = match uri.query.connection_timeout {
                Some(ms) => {
                    TcpStream::connect_timeout(address, std::time::Duration::from_millis(ms))
                }
                None => TcpStream::connect(address),
            }?;
            let stream = match uri.scheme {
                AMQPScheme::AMQPS => stream.into_rustls(&connector, &uri.authority.host)?,
                // `load` refused plain URLs; never fall back to clear text.
                AMQPScheme::AMQP => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "TLS is configured but the URL is not amqps://",
                    )
                    .into())
                }
            };
            stream.set_nonblocking(true)?;
            Ok(stream)
        }))
    }
}

fn read_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, AmqpTlsError> {
    let pem = read(setting, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(setting, path, "PEM certificate", &e.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error(
            setting,
            path,
            "PEM certificate",
            "no \"BEGIN CERTIFICATE\" block",
        ));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, AmqpTlsError> {
    let pem = read(CLIENT_KEY, path)?;
    // The parser's message never quotes the key itself.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| pem_error(CLIENT_KEY, path, "PEM private key", &e.to_string()))
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, AmqpTlsError> {
    std::fs::read(path).map_err(|source| AmqpTlsError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(
    setting: &'static str,
    path: &Path,
    expected: &'static str,
    reason: &str,
) -> AmqpTlsError {
    AmqpTlsError::Pem {
        setting,
        path: path.to_owned(),
        expected,
        reason: reason.to_owned(),
    }
}

fn native_roots() -> Result<RustlsConnectorConfig, AmqpTlsError> {
    // rustls-connector's own loader panics when the system store cannot be read.
    let loaded = rustls_native_certs::load_native_certs().map_err(AmqpTlsError::NativeRoots)?;
    let mut roots = RustlsConnectorConfig::default();
    roots.add_parsable_certificates(loaded);
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> AmqpTlsArgs {
        AmqpTlsArgs {
            ca_file: ca.map(Path::to_owned),
            client_cert: cert.map(Path::to_owned),
            client_key: key.map(Path::to_owned),
        }
    }

    #[test]
    fn nothing_configured_leaves_tls_to_the_url() {
        let tls = AmqpTlsArgs::default().load("amqp://h/%2f").unwrap();
        assert!(tls.handshake().is_none());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let missing = Path::new("/nonexistent/ca.pem");
        let error = args(Some(missing), None, None)
            .load("amqps://u:secret@h/%2f")
            .unwrap_err()
            .to_string();
        assert!(error.contains("SAGAFLOW_AMQP_CA_FILE"), "{error}");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn a_plain_url_with_tls_files_is_refused_without_its_password() {
        let error = args(Some(Path::new("/x")), None, None)
            .load("amqps://h/%2f,amqp://u:secret@h2/%2f")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not amqps://"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("sagaflow-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("empty.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let error = args(Some(&file), None, None)
            .load("amqps://h/%2f")
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
