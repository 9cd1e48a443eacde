//! Module bytes on disk, content-addressed: `modules/<sha256>.wasm`, all access through a
//! cap-std handle on the `modules` folder (no path outside it can be named).
//!
//! Writes go to `.tmp-…` in the same folder, are fsynced, renamed into place and the folder is
//! fsynced: a crash leaves either no file, a stray temporary file, or the complete file —
//! never a partial `<sha256>.wasm`. Stray temporary files and content files no database row
//! refers to are removed when the store opens.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use cap_std::fs::{Dir, OpenOptions};

use super::embedded::CrashPoint;
use super::{IntegrityProblem, StoreError};
use crate::trust::keyfile::sync_dir;
use crate::ModuleHash;

const TEMP_PREFIX: &str = ".tmp-";

/// The `modules` folder.
pub(crate) struct ContentFiles {
    dir: Dir,
}

/// What opening cleaned up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cleanup {
    pub temp_files: usize,
    pub orphans: usize,
}

fn file_name(sha256: &ModuleHash) -> String {
    format!("{sha256}.wasm")
}

impl ContentFiles {
    pub(crate) fn new(dir: Dir) -> ContentFiles {
        ContentFiles { dir }
    }

    /// Stores bytes under their hash. A complete file already there is kept (the same
    /// component serves several versions or applications); a damaged one is replaced.
    pub(crate) fn write(
        &self,
        sha256: &ModuleHash,
        bytes: &[u8],
        crash: &dyn Fn(CrashPoint) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.read_checked(sha256, bytes.len() as u64).is_ok() {
            return Ok(());
        }
        let tmp = format!("{TEMP_PREFIX}{sha256}-{:016x}", rand::random::<u64>());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let write = |tmp: &str| -> io::Result<cap_std::fs::File> {
            let mut file = self.dir.open_with(tmp, &options)?;
            file.write_all(bytes)?;
            Ok(file)
        };
        let file = match write(&tmp) {
            Ok(file) => file,
            Err(e) => {
                let _ = self.dir.remove_file(&tmp);
                return Err(StoreError::io("write a module file")(e));
            }
        };
        crash(CrashPoint::TempWritten)?;
        let placed = file
            .sync_all()
            .and_then(|()| self.dir.rename(&tmp, &self.dir, file_name(sha256)))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = placed {
            let _ = self.dir.remove_file(&tmp);
            return Err(StoreError::io("write a module file")(e));
        }
        crash(CrashPoint::FileInPlace)
    }

    /// Reads the file and checks its size and SHA-256 (SER-013).
    pub(crate) fn read_checked(
        &self,
        sha256: &ModuleHash,
        size: u64,
    ) -> Result<Vec<u8>, IntegrityProblem> {
        let file = match self.dir.open(file_name(sha256)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IntegrityProblem::Missing { sha256: *sha256 })
            }
            Err(e) => return Err(IntegrityProblem::Unreadable(e)),
        };
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(IntegrityProblem::Unreadable)?;
        if bytes.len() as u64 != size {
            return Err(IntegrityProblem::SizeMismatch {
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = ModuleHash::of(&bytes);
        if actual != *sha256 {
            return Err(IntegrityProblem::HashMismatch { actual });
        }
        Ok(bytes)
    }

    /// Deletes a content file (no row refers to it any more).
    pub(crate) fn remove(&self, sha256: &ModuleHash) -> Result<(), StoreError> {
        match self.dir.remove_file(file_name(sha256)) {
            Ok(()) => sync_dir(&self.dir).map_err(StoreError::io("remove a module file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove a module file")(e)),
        }
    }

    /// Removes temporary files left by a crash and content files no row refers to. Other
    /// files are left alone (they are not the registry's).
    pub(crate) fn clean(&self, referenced: &HashSet<ModuleHash>) -> Result<Cleanup, StoreError> {
        let mut cleanup = Cleanup::default();
        let err = StoreError::io("clean the modules folder");
        let entries = self
            .dir
            .entries()
            .map_err(StoreError::io("list the modules folder"))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list the modules folder"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                self.dir
                    .remove_file(name)
                    .map_err(StoreError::io("clean the modules folder"))?;
                cleanup.temp_files += 1;
            } else if let Some(sha) = name.strip_suffix(".wasm").and_then(|h| h.parse().ok()) {
                if !referenced.contains(&sha) {
                    self.dir
                        .remove_file(name)
                        .map_err(StoreError::io("clean the modules folder"))?;
                    cleanup.orphans += 1;
                }
            }
        }
        if cleanup != Cleanup::default() {
            sync_dir(&self.dir).map_err(err)?;
        }
        Ok(cleanup)
    }
}
