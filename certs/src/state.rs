//! A node's state directory: files written atomically, keys mode 0600, nothing
//! overwritten by accident, and errors that name the file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Where a node keeps its credentials (and, on the CA node, the CA).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca.key";
pub(crate) const NODE_CERT: &str = "node.pem";
pub(crate) const NODE_KEY: &str = "node.key";
pub(crate) const CRL: &str = "crl.der";
pub(crate) const REGISTRY: &str = "registry.json";

impl StateDir {
    /// `dir`, or `$XDG_STATE_HOME/netmsg` (`~/.local/state/netmsg`).
    pub fn new(dir: Option<PathBuf>) -> Result<Self, Error> {
        let root = match dir {
            Some(d) => d,
            None => {
                let base = std::env::var_os("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"))
                    })
                    .ok_or_else(|| {
                        Error::Usage(
                            "neither XDG_STATE_HOME nor HOME is set: pass --state DIR".into(),
                        )
                    })?;
                base.join("netmsg")
            }
        };
        Ok(Self { root })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.root).map_err(|source| Error::Io {
            path: self.root.clone(),
            source,
        })?;
        let _ = fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700));
        Ok(())
    }

    /// Writes `name` atomically (temporary file, fsync, rename). `secret` files
    /// are created mode 0600. With `create_new`, an existing file is an error.
    pub(crate) fn write(
        &self,
        name: &str,
        data: &[u8],
        secret: bool,
        create_new: bool,
    ) -> Result<(), Error> {
        self.ensure_dir()?;
        let path = self.path(name);
        if create_new && path.exists() {
            return Err(Error::Exists {
                path,
                hint: "use another --state directory, or remove it if you mean to start over",
            });
        }
        let tmp = self.path(&format!(".{name}.tmp-{}", std::process::id()));
        let io = |source| Error::Io {
            path: tmp.clone(),
            source,
        };
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&tmp)
                .map_err(io)?;
            f.write_all(data).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if let Ok(d) = fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub(crate) fn read(&self, name: &str, hint: &'static str) -> Result<Vec<u8>, Error> {
        let path = self.path(name);
        fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::Missing { path, hint }
            } else {
                Error::Io { path, source }
            }
        })
    }

    /// Writes a small non-secret file (such as the remembered CA address).
    pub fn write_note(&self, name: &str, text: &str) -> Result<(), Error> {
        self.write(name, text.as_bytes(), false, false)
    }

    /// Reads a file written by [`StateDir::write_note`].
    pub fn read_note(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    pub(crate) fn read_text(&self, name: &str, hint: &'static str) -> Result<String, Error> {
        let bytes = self.read(name, hint)?;
        String::from_utf8(bytes)
            .map_err(|_| Error::file(&self.path(name), "not text (expected PEM)"))
    }
}
