//! TLS for `rediss://` URLs (what managed services require), named as redis-py names it so its
//! users know the options already: the server is verified against the system's roots, or
//! `ssl_ca_certs` (a CA file); `ssl_certfile` and `ssl_keyfile` are the client's certificate
//! for mutual TLS; `ssl_cert_reqs = "none"` turns verification off, only when asked. Each may
//! be given in [`RedisOptions`] or, as redis-py's `from_url` takes them, in the URL's query
//! (`rediss://host:6380/0?ssl_ca_certs=/etc/ca.pem`), which is how the harness and a pickled
//! Python handle pass them on; not in both.
//!
//! A failed handshake is told apart here from other lost connections, so that its error names
//! the cause: a certificate this client does not trust, a client certificate the server
//! wanted, a port that does not speak TLS.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shmap::{Error, Result};

use super::conn::RedisOptions;

/// Whether the client verifies the server's certificate (redis-py's `ssl_cert_reqs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertReqs {
    /// Verify it against the roots (the system's, or `ssl_ca_certs`), and that it names the
    /// URL's host: the default.
    #[default]
    Required,
    /// Accept any certificate: the traffic is encrypted, but anyone on the path can pose as
    /// the server. Only when asked.
    None,
}

impl CertReqs {
    /// `"required"` or `"none"`, as redis-py spells them (`"optional"` means `"required"` for
    /// a client, as in Python's `ssl`).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "required" | "optional" => Ok(Self::Required),
            "none" => Ok(Self::None),
            _ => Err(Error::InvalidParameter {
                what: "ssl_cert_reqs",
                reason: format!("{s:?}: choose \"required\" (the default) or \"none\""),
            }),
        }
    }
}

/// What a TLS connection needs: the certificates to pass the client, and whether to verify.
pub(super) struct Tls {
    /// `None`: the system's roots and no client certificate.
    pub certs: Option<TlsCertificates>,
    pub insecure: bool,
}

/// The TLS options of the URL's query (taken out of it) and of `opts`, checked and read.
/// Returns the URL the client should parse and, for `rediss://`, how to connect.
pub(super) fn prepare(
    url: &str,
    label: &str,
    opts: &RedisOptions,
) -> Result<(String, Option<Tls>)> {
    let bad_url = |reason: String| Error::InvalidParameter {
        what: "url",
        reason: format!("{label}: {reason}"),
    };
    let mut parsed = url::Url::parse(url).map_err(|e| bad_url(e.to_string()))?;
    let mut from_url = RedisOptions::default();
    let mut rest = Vec::new();
    let mut found = false;
    for (k, v) in parsed.query_pairs() {
        let v = v.into_owned();
        match k.as_ref() {
            "ssl_ca_certs" => from_url.ssl_ca_certs = Some(v.into()),
            "ssl_certfile" => from_url.ssl_certfile = Some(v.into()),
            "ssl_keyfile" => from_url.ssl_keyfile = Some(v.into()),
            "ssl_cert_reqs" => from_url.ssl_cert_reqs = Some(CertReqs::parse(&v)?),
            _ => {
                rest.push((k.into_owned(), v));
                continue;
            }
        }
        found = true;
    }
    let url = if found {
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&rest);
        }
        parsed.to_string()
    } else {
        url.to_owned()
    };
    let pick = |what: &'static str, a: &Option<PathBuf>, b: &Option<PathBuf>| match (a, b) {
        (Some(_), Some(_)) => Err(both(label, what)),
        _ => Ok(a.clone().or_else(|| b.clone())),
    };
    let ca = pick("ssl_ca_certs", &opts.ssl_ca_certs, &from_url.ssl_ca_certs)?;
    let certfile = pick("ssl_certfile", &opts.ssl_certfile, &from_url.ssl_certfile)?;
    let keyfile = pick("ssl_keyfile", &opts.ssl_keyfile, &from_url.ssl_keyfile)?;
    let reqs = match (opts.ssl_cert_reqs, from_url.ssl_cert_reqs) {
        (Some(_), Some(_)) => return Err(both(label, "ssl_cert_reqs")),
        (a, b) => a.or(b),
    };
    let given = [
        ("ssl_ca_certs", ca.is_some()),
        ("ssl_certfile", certfile.is_some()),
        ("ssl_keyfile", keyfile.is_some()),
        ("ssl_cert_reqs", reqs.is_some()),
    ];
    if !matches!(parsed.scheme(), "rediss" | "valkeys") {
        if let Some((what, _)) = given.iter().find(|(_, g)| *g) {
            return Err(Error::InvalidParameter {
                what,
                reason: format!("{label} is not TLS: {what} is for rediss:// URLs"),
            });
        }
        return Ok((url, None));
    }
    if keyfile.is_some() && certfile.is_none() {
        return Err(Error::InvalidParameter {
            what: "ssl_keyfile",
            reason: "a client key needs its certificate: give ssl_certfile too".into(),
        });
    }
    let root_cert = ca
        .map(|p| read_pem(&p, "ssl_ca_certs", Pem::Certificate))
        .transpose()?;
    let client_tls = match certfile {
        Some(cert) => {
            let client_cert = read_pem(&cert, "ssl_certfile", Pem::Certificate)?;
            // As Python's `ssl`: without ssl_keyfile, the key is in the certificate's file.
            let (what, key) = match &keyfile {
                Some(k) => ("ssl_keyfile", k),
                None => ("ssl_certfile", &cert),
            };
            let client_key = read_pem(key, what, Pem::Key)?;
            Some(ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        None => None,
    };
    let certs = (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
        client_tls,
        root_cert,
    });
    Ok((
        url,
        Some(Tls {
            certs,
            insecure: reqs == Some(CertReqs::None),
        }),
    ))
}

fn both(label: &str, what: &'static str) -> Error {
    Error::InvalidParameter {
        what,
        reason: format!(
            "{label} has {what} in its query already: give it there or as {what}=, not both"
        ),
    }
}

enum Pem {
    Certificate,
    Key,
}

/// The file's bytes, once they hold what `what` needs: a PEM file without it would otherwise
/// show up only at the handshake, as a certificate nobody can verify.
fn read_pem(path: &Path, what: &'static str, kind: Pem) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::InvalidParameter {
        what,
        reason: format!("{}: {reason}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    match kind {
        Pem::Certificate => {
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
            if certs.is_empty() {
                return Err(bad(
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
        }
        Pem::Key => {
            PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| bad(format!("holds no PEM private key ({e})")))?;
        }
    }
    Ok(bytes)
}

/// The TLS failure inside `e`, if the connection failed in its handshake.
fn rustls_error(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    // The client keeps its cause as an `Arc<dyn Error>` (a `rustls::Error` from the handshake,
    // an `io::Error` from the stream that wraps one), and an io::Error's `source` skips the
    // error it wraps: look through both.
    let cause: &(dyn std::error::Error + 'static) = std::error::Error::source(e)?;
    let cause: &(dyn std::error::Error + 'static) = match cause.downcast_ref::<Shared>() {
        Some(shared) => &**shared,
        None => cause,
    };
    cause.downcast_ref::<rustls::Error>().or_else(|| {
        cause
            .downcast_ref::<std::io::Error>()?
            .get_ref()?
            .downcast_ref::<rustls::Error>()
    })
}

/// A failed TLS handshake as an error that names its cause; `None` if `e` is not one.
pub(super) fn handshake_error(label: &str, e: &RedisError) -> Option<Error> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    let t = rustls_error(e)?;
    let connection = |reason: String| Error::Connection {
        url: label.to_owned(),
        reason,
    };
    Some(match t {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                Cert::UnknownIssuer => "is not signed by a CA this client trusts",
                Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                    "does not name the URL's host"
                }
                Cert::Expired | Cert::ExpiredContext { .. } => "has expired",
                Cert::NotValidYet | Cert::NotValidYetContext { .. } => "is not valid yet",
                _ => "was refused",
            };
            connection(format!(
                "TLS certificate verification failed: the server's certificate {why} ({t}); \
                 give the CA that signed it as ssl_ca_certs=, or ssl_cert_reqs=\"none\" to \
                 connect without verifying the server"
            ))
        }
        rustls::Error::AlertReceived(
            Alert::CertificateRequired | Alert::HandshakeFailure | Alert::BadCertificate,
        )
        | rustls::Error::AlertReceived(Alert::UnknownCA | Alert::CertificateUnknown) => {
            Error::PermissionDenied {
                url: label.to_owned(),
                reason: format!(
                    "the server refused the TLS handshake ({t}): it wants a client certificate \
                     it trusts (mutual TLS: ssl_certfile= and ssl_keyfile=)"
                ),
            }
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            connection(format!(
                "the server does not speak TLS on this port ({t}): is it a redis:// port?"
            ))
        }
        _ => connection(format!("TLS handshake failed: {t}")),
    })
}
