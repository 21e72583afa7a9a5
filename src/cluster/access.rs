//! What a connection to etcd presents and trusts, read from the files that
//! `EtcdAccess` names and from the environment: CA certificates, a client
//! certificate and key, a user and password. Read when a client is made, so
//! that rotated files are picked up by the next connection; nothing read
//! here is ever recorded, printed or logged (the password is a `Secret`).

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::{Error, Result};
use crate::model::overlay::EtcdAccess;

/// The environment variable a password is taken from when no password
/// file is named.
pub const PASSWORD_ENV: &str = "NSNET_ETCD_PASSWORD";

/// A value that must not be shown: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// An etcd user and its password.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Secret,
}

/// The TLS settings and login of a client.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub tls: TlsConfig,
    pub login: Option<Login>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadCredential {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn unusable(what: &'static str, path: &Path, reason: impl Into<String>) -> Error {
    Error::BadCredential {
        what,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The PEM certificates in a file (at least one).
fn certificates(what: &'static str, path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = read(what, path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| unusable(what, path, e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(unusable(what, path, "it holds no PEM certificate"));
    }
    Ok(certs)
}

/// The first PEM private key in a file.
fn private_key(path: &Path) -> Result<PrivateKey<'static>> {
    let what = "private key";
    let pem = read(what, path)?;
    for item in ureq::tls::parse_pem(&pem) {
        // An error of the parser names the PEM section, never key bytes.
        if let PemItem::PrivateKey(k) = item.map_err(|e| unusable(what, path, e.to_string()))? {
            return Ok(k);
        }
    }
    Err(unusable(what, path, "it holds no PEM private key"))
}

fn password(user: &str, file: Option<&PathBuf>) -> Result<Secret> {
    if let Some(path) = file {
        let text = read("password file", path)?;
        let text = String::from_utf8(text)
            .map_err(|_| unusable("password file", path, "it is not UTF-8 text"))?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(unusable("password file", path, "it is empty"));
        }
        return Ok(Secret(line.to_string()));
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(Secret(p)),
        _ => Err(Error::NoPassword {
            user: user.to_string(),
        }),
    }
}

/// Reads what `access` names (and the password from the environment).
pub fn load(access: &EtcdAccess) -> Result<Credentials> {
    let mut tls = TlsConfig::builder();
    if let Some(ca) = &access.ca {
        tls = tls.root_certs(RootCerts::new_with_certs(&certificates("CA", ca)?));
    }
    if let (Some(cert), Some(key)) = (&access.cert, &access.key) {
        let chain = certificates("client certificate", cert)?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, private_key(key)?)));
    }
    let login = match &access.user {
        Some(user) => Some(Login {
            user: user.clone(),
            password: password(user, access.password_file.as_ref())?,
        }),
        None => None,
    };
    Ok(Credentials {
        tls: tls.build(),
        login,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_from_debug() {
        let login = Login {
            user: "nsnet".into(),
            password: Secret("hunter2".into()),
        };
        let shown = format!("{login:?}");
        assert!(
            shown.contains("nsnet") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = EtcdAccess {
            ca: Some(dir.path().join("nope.pem")),
            ..EtcdAccess::default()
        };
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.contains("etcd CA") && e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load(&EtcdAccess {
            ca: Some(empty),
            ..EtcdAccess::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "\n").unwrap();
        let e = load(&EtcdAccess {
            user: Some("u".into()),
            password_file: Some(pw),
            ..EtcdAccess::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("password file") && e.contains("empty"), "{e}");
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let c = load(&EtcdAccess {
            user: Some("u".into()),
            password_file: Some(pw),
            ..EtcdAccess::default()
        })
        .unwrap();
        assert_eq!(c.login.unwrap().password.expose(), "s3cret");
    }
}
