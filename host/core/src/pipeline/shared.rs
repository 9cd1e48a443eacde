//! Compiled modules shared between applications: one compilation per distinct module for a
//! whole gateway, however many applications run it.
//!
//! Compiled code is the bulk of an application's memory (~600 KiB for `acp`), and a module
//! is found again by its bytes. Hashing those bytes (~200 KiB) for every application was a
//! third of a 100-app gateway's start-up (perf), so a module handed in as the very same
//! buffer (`Arc<[u8]>`) is recognised by its address first and hashed only otherwise.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::engine::{CompiledComponent, Engine, EngineError};

/// Modules compiled once, for every application that uses them.
#[derive(Default)]
pub struct SharedModules {
    /// Each buffer seen, with its compiled form. Holding the buffers keeps their addresses
    /// from being reused by other bytes, which is what makes the address a sound key.
    modules: Vec<(Arc<[u8]>, CompiledComponent)>,
}

impl SharedModules {
    /// The compiled form of `bytes`, compiling it the first time its content is seen.
    pub fn get_or_compile(
        &mut self,
        engine: &Engine,
        bytes: &Arc<[u8]>,
    ) -> Result<&CompiledComponent, EngineError> {
        let index = match self.position(bytes) {
            Some(index) => index,
            None => {
                let digest: [u8; 32] = Sha256::digest(bytes).into();
                let compiled = match self.by_digest(&digest) {
                    Some(known) => known.clone(),
                    // `Engine::compile` would hash the bytes again for its cache key.
                    None => CompiledComponent::new(engine.compile_keyed(&digest, bytes)?, digest),
                };
                self.modules.push((bytes.clone(), compiled));
                self.modules.len() - 1
            }
        };
        Ok(&self.modules[index].1)
    }

    /// The compiled form of `bytes`, if these bytes were compiled here.
    pub fn find(&self, bytes: &[u8]) -> Option<&CompiledComponent> {
        match self.position(bytes) {
            Some(index) => Some(&self.modules[index].1),
            None => self.by_digest(&Sha256::digest(bytes).into()),
        }
    }

    /// The module held as this very buffer.
    fn position(&self, bytes: &[u8]) -> Option<usize> {
        self.modules.iter().position(|(held, _)| {
            std::ptr::eq(held.as_ptr(), bytes.as_ptr()) && held.len() == bytes.len()
        })
    }

    fn by_digest(&self, digest: &[u8; 32]) -> Option<&CompiledComponent> {
        self.modules
            .iter()
            .map(|(_, compiled)| compiled)
            .find(|compiled| &compiled.sha256 == digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    #[test]
    fn a_module_is_found_by_its_buffer_or_by_its_content() {
        let engine = Engine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        let mut shared = SharedModules::default();
        let buffer: Arc<[u8]> = Arc::from(palisade_artifacts::ACP);
        let same_content: Arc<[u8]> = Arc::from(palisade_artifacts::ACP.to_vec());
        let first = shared.get_or_compile(&engine, &buffer).unwrap().sha256;
        let second = shared
            .get_or_compile(&engine, &same_content)
            .unwrap()
            .sha256;
        assert_eq!(first, second);
        assert_eq!(
            first,
            <[u8; 32]>::from(Sha256::digest(palisade_artifacts::ACP))
        );
        assert!(shared.find(&buffer).is_some(), "the same buffer");
        let another_buffer = palisade_artifacts::ACP.to_vec();
        assert!(
            shared.find(&another_buffer).is_some(),
            "another buffer with the same bytes"
        );
        assert!(shared.find(b"not a module seen here").is_none());
    }
}
