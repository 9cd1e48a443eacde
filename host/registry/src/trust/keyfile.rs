//! Ed25519 key files.
//!
//! Both are one line of compact JSON (plus a newline), every field mandatory:
//!
//! ```text
//! PREFIX.pub  {"format":"palisade-ed25519-public-v1","key_id":"<16 hex>","public_key":"<64 hex>"}
//! PREFIX.key  {"format":"palisade-ed25519-private-v1","key_id":"<16 hex>","public_key":"<64 hex>",
//!              "secret_key":"<64 hex: the 32-byte Ed25519 seed>"}
//! ```
//!
//! The key id is checked against the key when a file is read. Private key files are created
//! with mode 0600 (never wider, even for an instant: the temporary file is created 0600 and
//! then linked into place) and refused when group or others can read them; secrets are
//! zeroized in memory after use. Files are written through a cap-std handle on their directory,
//! to a temporary name, fsynced, then linked (no overwrite) or renamed (replace) into place, so
//! a crash never leaves a half-written key.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::key_id;
use crate::decode_hex;
use crate::format::{self, expect_format, FormatError};

/// The `format` of a public key file.
pub const PUBLIC_KEY_FORMAT: &str = "palisade-ed25519-public-v1";
/// The `format` of a private key file.
pub const PRIVATE_KEY_FORMAT: &str = "palisade-ed25519-private-v1";

/// Key files larger than this are not key files.
const MAX_KEY_FILE: usize = 4096;

/// A key file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file system refused.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done (`read`, `write`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// Keys are never overwritten: losing a root key cannot be undone.
    #[error("{path} already exists; refusing to overwrite a key file")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A private key file that group or others can read: the key may have leaked.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); private key files must be 0600"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a valid Palisade file of the expected kind.
    #[error("{path} is not a valid {what} file")]
    Format {
        /// The file.
        path: PathBuf,
        /// What it should be (`private key`, `public key`, `delegation`).
        what: &'static str,
        /// What is wrong with its contents.
        #[source]
        source: FormatError,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile<'a> {
    format: &'a str,
    key_id: String,
    public_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateFile<'a> {
    format: &'a str,
    key_id: String,
    public_key: String,
    secret_key: &'a str,
}

/// A new random Ed25519 key from the operating system's generator.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The public key file text (one JSON line and a newline).
pub fn encode_public_key(key: &VerifyingKey) -> String {
    let file = PublicFile {
        format: PUBLIC_KEY_FORMAT,
        key_id: key_id(key).to_string(),
        public_key: hex::encode(key.as_bytes()),
    };
    serde_json::to_string(&file).expect("plain strings serialize") + "\n"
}

/// Reads public key file text.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, FormatError> {
    let file: PublicFile = serde_json::from_str(text)?;
    expect_format(file.format, PUBLIC_KEY_FORMAT)?;
    let key = format::public_key(&file.public_key, "public key")?;
    check_id(&file.key_id, &key)?;
    Ok(key)
}

/// The private key file text; zeroized when dropped.
pub fn encode_private_key(key: &SigningKey) -> Zeroizing<String> {
    let secret = Zeroizing::new(hex::encode(key.to_bytes()));
    let file = PrivateFile {
        format: PRIVATE_KEY_FORMAT,
        key_id: key_id(&key.verifying_key()).to_string(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        secret_key: &secret,
    };
    let mut text = Zeroizing::new(serde_json::to_string(&file).expect("plain strings serialize"));
    text.push('\n');
    text
}

/// Reads private key file text, checking that the public key and id belong to the secret.
pub fn decode_private_key(text: &str) -> Result<SigningKey, FormatError> {
    let file: PrivateFile = serde_json::from_str(text)?;
    expect_format(file.format, PRIVATE_KEY_FORMAT)?;
    let seed = Zeroizing::new(decode_hex::<32>(file.secret_key, "secret key")?);
    let key = SigningKey::from_bytes(&seed);
    let public = format::public_key(&file.public_key, "public key")?;
    if public != key.verifying_key() {
        return Err(FormatError::KeyIdMismatch {
            stated: file.key_id,
            computed: key_id(&key.verifying_key()).to_string(),
        });
    }
    check_id(&file.key_id, &public)?;
    Ok(key)
}

fn check_id(stated: &str, key: &VerifyingKey) -> Result<(), FormatError> {
    let computed = key_id(key).to_string();
    if stated != computed {
        return Err(FormatError::KeyIdMismatch {
            stated: stated.to_owned(),
            computed,
        });
    }
    Ok(())
}

/// Writes `PREFIX.key` (mode 0600) and `PREFIX.pub`. Refuses when either exists; when the
/// second file cannot be written the first is removed again, so a failed keygen leaves nothing.
pub fn write_key_pair(prefix: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyFileError> {
    let with_ext = |ext: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (private, public) = (with_ext(".key"), with_ext(".pub"));
    for path in [&private, &public] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyFileError::Exists { path: path.clone() });
        }
    }
    write_new(&private, encode_private_key(key).as_bytes(), 0o600)?;
    if let Err(e) = write_new(
        &public,
        encode_public_key(&key.verifying_key()).as_bytes(),
        0o644,
    ) {
        let _ = remove(&private);
        return Err(e);
    }
    Ok((private, public))
}

/// Reads a private key file, refusing one that group or others can read.
pub fn read_private_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let (dir, name) = open_parent(path, "read")?;
    let io = |source| KeyFileError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = dir.open(&name).map_err(io)?;
    #[cfg(unix)]
    {
        use cap_std::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE as u64 + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    check_size(path, text.len())?;
    decode_private_key(&text).map_err(|source| KeyFileError::Format {
        path: path.to_owned(),
        what: "private key",
        source,
    })
}

/// Reads a public key file.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let text = read_small(path, MAX_KEY_FILE)?;
    decode_public_key(&text).map_err(|source| KeyFileError::Format {
        path: path.to_owned(),
        what: "public key",
        source,
    })
}

fn check_size(path: &Path, size: usize) -> Result<(), KeyFileError> {
    if size > MAX_KEY_FILE {
        let source = FormatError::TooLarge {
            what: "key file",
            size,
            limit: MAX_KEY_FILE,
        };
        return Err(KeyFileError::Format {
            path: path.to_owned(),
            what: "private key",
            source,
        });
    }
    Ok(())
}

/// Reads a small text file (at most `limit` bytes) through a handle on its directory.
pub(crate) fn read_small(path: &Path, limit: usize) -> Result<String, KeyFileError> {
    let bytes = read_file(path, limit as u64)?;
    String::from_utf8(bytes).map_err(|e| KeyFileError::Io {
        action: "read",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

/// Reads a file of at most `limit` bytes through a handle on its directory (the CLI's inputs).
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, KeyFileError> {
    let (dir, name) = open_parent(path, "read")?;
    let io = |source| KeyFileError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    dir.open(&name)
        .map_err(io)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        let source = FormatError::TooLarge {
            what: "file",
            size: bytes.len(),
            limit: limit as usize,
        };
        return Err(KeyFileError::Format {
            path: path.to_owned(),
            what: "input",
            source,
        });
    }
    Ok(bytes)
}

/// Reads a delegation file (the output of `palisade delegate`).
pub fn read_delegation(path: &Path) -> Result<super::Delegation, KeyFileError> {
    let text = read_small(path, 64 * 1024)?;
    super::Delegation::from_json(&text).map_err(|source| KeyFileError::Format {
        path: path.to_owned(),
        what: "delegation",
        source,
    })
}

/// Writes a file that is not a secret (a delegation, a signed module), replacing any previous
/// one atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    publish(path, bytes, 0o644, true)
}

/// Creates a file that must not exist yet, with these permission bits.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    publish(path, bytes, mode, false)
}

fn publish(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), KeyFileError> {
    let (dir, name) = open_parent(path, "write")?;
    let io = |source| KeyFileError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let tmp = format!(
        ".{}.tmp-{:016x}",
        name.to_string_lossy(),
        rand::random::<u64>()
    );
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    cap_std::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = (|| {
        let mut file = dir.open_with(&tmp, &options)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    let placed = written.and_then(|()| {
        if replace {
            dir.rename(&tmp, &dir, &name)
        } else {
            // A hard link fails when the target exists: no window in which a key is replaced.
            let linked = dir.hard_link(&tmp, &dir, &name);
            let _ = dir.remove_file(&tmp);
            linked
        }
    });
    if let Err(e) = placed {
        let _ = dir.remove_file(&tmp);
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            io(e)
        });
    }
    sync_dir(&dir).map_err(io)
}

fn remove(path: &Path) -> Result<(), KeyFileError> {
    let (dir, name) = open_parent(path, "remove")?;
    dir.remove_file(&name).map_err(|source| KeyFileError::Io {
        action: "remove",
        path: path.to_owned(),
        source,
    })
}

/// Makes a rename or link durable: fsync of the directory that holds it. (The `Dir` handle
/// itself may be an `O_PATH` descriptor, which cannot be fsynced, so `.` is opened for reading.)
pub(crate) fn sync_dir(dir: &Dir) -> io::Result<()> {
    dir.open(".")?.sync_all()
}

/// A cap-std handle on a path's directory and the file name inside it. This is the one place
/// where a user-given path is resolved with ambient authority (the CLI's arguments).
fn open_parent(path: &Path, action: &'static str) -> Result<(Dir, PathBuf), KeyFileError> {
    let io = |source| KeyFileError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open_ambient_dir(parent, ambient_authority()).map_err(io)?;
    Ok((dir, PathBuf::from(name)))
}
