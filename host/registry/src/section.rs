//! The component container: its header, its top-level sections, and the one custom section
//! that carries the signature.
//!
//! The signature section is found by walking the component's top-level sections with
//! wasmparser, skipping over nested modules and components without entering them: a section
//! named `palisade-signature` inside a nested core module is part of the signed bytes, not a
//! signature. The module hash covers the file with exactly that one top-level section removed.

use std::borrow::Cow;
use std::ops::Range;

use wasmparser::{Chunk, Parser, Payload};

/// The name of the custom section that carries manifest, signature and delegation.
pub const SIGNATURE_SECTION: &str = "palisade-signature";

/// The first 8 bytes of every component: magic `\0asm`, version 0x0d 0x00, layer 0x01 0x00.
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";
/// Magic and version/layer of a core WebAssembly module.
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Why bytes are not a WebAssembly component whose sections can be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// The file ends in the middle of its header or of a section.
    #[error("the file is truncated: it ends inside a section ({len} bytes)")]
    Truncated {
        /// The file's length.
        len: usize,
    },
    /// The file does not start with the WebAssembly magic `\0asm`.
    #[error("the file is not WebAssembly (it does not start with \\0asm)")]
    NotWebAssembly,
    /// A core module (version 1) instead of a component.
    #[error("the file is a core WebAssembly module, not a component")]
    CoreModule,
    /// Some other WebAssembly version or layer.
    #[error("the file is not a WebAssembly component (version and layer bytes {version:02x?})")]
    NotAComponent {
        /// The four version and layer bytes found.
        version: [u8; 4],
    },
    /// A section header or a section that cannot be parsed.
    #[error("the component is malformed at byte {offset}: {message}")]
    Malformed {
        /// Where the parser stopped.
        offset: usize,
        /// What wasmparser reported.
        message: String,
    },
    /// More than one top-level signature section: which one counts would be ambiguous.
    #[error("the component has {count} palisade-signature sections; exactly one is allowed")]
    Duplicate {
        /// How many there are.
        count: usize,
    },
}

/// A component split into the bytes the hash covers and its signature section's contents.
pub(crate) struct Split<'a> {
    /// The component without its signature section.
    pub component: Cow<'a, [u8]>,
    /// The contents of the signature section, if there is one.
    pub signature: Option<&'a [u8]>,
}

/// Checks the 8-byte component header.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), SectionError> {
    let magic_len = bytes.len().min(4);
    if bytes[..magic_len] != COMPONENT_HEADER[..magic_len] {
        return Err(SectionError::NotWebAssembly);
    }
    if bytes.len() < COMPONENT_HEADER.len() {
        return Err(SectionError::Truncated { len: bytes.len() });
    }
    let version: [u8; 4] = bytes[4..8].try_into().expect("four bytes");
    if version == CORE_MODULE_VERSION {
        return Err(SectionError::CoreModule);
    }
    if version != COMPONENT_HEADER[4..8] {
        return Err(SectionError::NotAComponent { version });
    }
    Ok(())
}

/// Finds the top-level `palisade-signature` sections and removes the one there may be.
pub(crate) fn split(bytes: &[u8]) -> Result<Split<'_>, SectionError> {
    check_header(bytes)?;
    let mut found: Vec<(Range<usize>, &[u8])> = Vec::new();
    let mut parser = Parser::new(0);
    let mut offset = 0usize;
    loop {
        let before = parser.clone();
        let (consumed, payload) = match parser.parse(&bytes[offset..], true) {
            Ok(Chunk::Parsed { consumed, payload }) => (consumed, payload),
            Ok(Chunk::NeedMoreData(_)) => return Err(SectionError::Truncated { len: bytes.len() }),
            Err(e) => {
                // The same input without end-of-file asks for more data exactly when the
                // error is the file ending early: that is a truncation, not a bad section.
                let mut probe = before;
                if let Ok(Chunk::NeedMoreData(_)) = probe.parse(&bytes[offset..], false) {
                    return Err(SectionError::Truncated { len: bytes.len() });
                }
                return Err(SectionError::Malformed {
                    offset: e.offset(),
                    message: e.message().to_owned(),
                });
            }
        };
        let start = offset;
        offset += consumed;
        match payload {
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                // Step over the nested module or component without parsing into it.
                if unchecked_range.end > bytes.len() {
                    return Err(SectionError::Truncated { len: bytes.len() });
                }
                offset = unchecked_range.end;
            }
            Payload::CustomSection(reader) if reader.name() == SIGNATURE_SECTION => {
                found.push((start..offset, reader.data()));
            }
            Payload::UnknownSection { id, .. } => {
                return Err(SectionError::Malformed {
                    offset: start,
                    message: format!("unknown section id {id}"),
                });
            }
            Payload::End(_) => break,
            _ => {}
        }
    }
    match found.len() {
        0 => Ok(Split {
            component: Cow::Borrowed(bytes),
            signature: None,
        }),
        1 => {
            let (range, data) = found.pop().expect("one section");
            let mut component = Vec::with_capacity(bytes.len() - range.len());
            component.extend_from_slice(&bytes[..range.start]);
            component.extend_from_slice(&bytes[range.end..]);
            Ok(Split {
                component: Cow::Owned(component),
                signature: Some(data),
            })
        }
        count => Err(SectionError::Duplicate { count }),
    }
}

/// The component without its `palisade-signature` section: the bytes the module hash covers
/// and the bytes to compile. Unsigned input comes back unchanged.
pub fn strip_signature(bytes: &[u8]) -> Result<Vec<u8>, SectionError> {
    Ok(split(bytes)?.component.into_owned())
}

/// Appends a custom section (id 0, size, name, data) to a component.
pub(crate) fn append_custom_section(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut body = Vec::with_capacity(name.len() + data.len() + 5);
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    out.push(0);
    leb128(out, body.len());
    out.extend_from_slice(&body);
}

/// Unsigned LEB128, as WebAssembly encodes section sizes.
pub(crate) fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
