//! Bounds on an untrusted module, checked before anything compiles it.
//!
//! Compiling is where a module can hurt the gateway before it ever runs (issue #12.1):
//! components nested 10,000 deep take a compiler to gigabytes, a function with ~49,000 live
//! locals holds a core for over a minute, 100,000 functions take seconds and half a gigabyte.
//! wasmparser reads the whole structure of a module in one streaming pass with little memory
//! (it allocates nothing per nesting level beyond a parser state, and stops at the first
//! bound exceeded), so every count that drives compile cost is checked here first and a
//! module over any of them is refused, naming the limit and the value found. Compilation
//! itself then runs under CPU and memory limits of its own ([`super::compiler`]), which bound
//! whatever these counts cannot see.
//!
//! Every limit is configurable ([`ModuleLimits`], and the gateway's `[compile.module]`
//! table); the defaults leave room for the largest plugins the project knows of
//! (interpreters packaged as components: CPython through `componentize-py`, ~40 MB and tens
//! of thousands of functions) and refuse every bomb of the hostile suite.

use serde::Deserialize;
use wasmparser::{Encoding, Imports, Instance, Parser, Payload};

/// Bounds on a module's structure. Counts are over the whole file, nested modules and
/// components included, except where a field says "per module".
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModuleLimits {
    /// Size of the file. Cost of a higher value: parse time, and the compile limits must
    /// grow with it. Default: 64 MiB.
    pub max_module_bytes: usize,
    /// Components and core modules nested inside each other (the outer component is depth
    /// 1, a core module inside it 2). Plugins built by `cargo component`, `wit-component`,
    /// `componentize-py` and `componentize-js` need 2–3. Default: 16.
    pub max_nesting_depth: u32,
    /// Core modules in the file. Default: 64.
    pub max_core_modules: u32,
    /// Components nested in the file (the outer one not counted). Default: 64.
    pub max_components: u32,
    /// Core instances declared in the file. Also the pooling allocator's
    /// `max_core_instances_per_component`, so a module the pool cannot instantiate is
    /// refused at load rather than at its first request. Default: 16.
    pub max_core_instances: u32,
    /// Component instances declared in the file. Default: 256.
    pub max_component_instances: u32,
    /// Functions defined (with bodies) in all core modules. Compile time and memory grow
    /// with it (~6 KB of compiler memory per small function). Default: 60,000.
    pub max_functions: u32,
    /// Locals declared by one function. Register allocation grows faster than linearly in
    /// live values: ~49,000 took 70 s to compile. wasmparser itself stops at 50,000.
    /// Default: 4,096.
    pub max_locals_per_function: u32,
    /// Locals declared by all functions together. Default: 4,000,000.
    pub max_total_locals: u64,
    /// Linear memories defined in one core module. Also the pooling
    /// allocator's `max_memories_per_module`. Default: 1.
    pub max_memories_per_module: u32,
    /// Linear memories defined in the whole file. Also the pool's `max_memories_per_component`.
    /// Default: 4.
    pub max_memories: u32,
    /// Tables defined in one core module. Also the pool's
    /// `max_tables_per_module`. Default: 1.
    pub max_tables_per_module: u32,
    /// Tables defined in the whole file. Also the pool's `max_tables_per_component`. Default: 8.
    pub max_tables: u32,
    /// Globals in the whole file. Default: 100,000.
    pub max_globals: u32,
    /// Data segments in the whole file. Default: 100,000.
    pub max_data_segments: u32,
    /// Element segments in the whole file. Default: 100,000.
    pub max_elem_segments: u32,
    /// Imports (core and component) in the whole file. Default: 10,000.
    pub max_imports: u32,
    /// Exports (core and component) in the whole file. Default: 10,000.
    pub max_exports: u32,
    /// Type definitions (core and component) in the whole file. Default: 100,000.
    pub max_types: u32,
    /// Bytes of type definitions (every type section together): a type's size is what the
    /// component compiler expands, and a few bytes can nest deeply. Default: 4 MiB.
    pub max_type_bytes: usize,
    /// Whether a core module or component may name a start function, which runs during
    /// instantiation, before any call and outside its deadline accounting. No plugin built
    /// with the SDK has one. Default: false.
    pub allow_start_functions: bool,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            max_module_bytes: 64 << 20,
            max_nesting_depth: 16,
            max_core_modules: 64,
            max_components: 64,
            max_core_instances: 16,
            max_component_instances: 256,
            max_functions: 60_000,
            max_locals_per_function: 4_096,
            max_total_locals: 4_000_000,
            max_memories_per_module: 1,
            max_memories: 4,
            max_tables_per_module: 1,
            max_tables: 8,
            max_globals: 100_000,
            max_data_segments: 100_000,
            max_elem_segments: 100_000,
            max_imports: 10_000,
            max_exports: 10_000,
            max_types: 100_000,
            max_type_bytes: 4 << 20,
            allow_start_functions: false,
        }
    }
}

/// Why a module was refused before compilation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleRefusal {
    /// Not WebAssembly at all, or cut short.
    #[error("the file is not a WebAssembly component, nor WebAssembly at all: {0}")]
    NotWasm(String),
    /// A core module where a component is expected.
    #[error(
        "the file is a core WebAssembly module, not a component: plugins are components of the \
         palisade:plugin world (build with `cargo build --target wasm32-wasip2`, or wrap a core \
         module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// A count or size over its limit.
    #[error(
        "refused before compiling: {what}: the module has {found}, the limit ({limit_name}) is {limit}"
    )]
    OverLimit {
        what: &'static str,
        limit_name: &'static str,
        found: u64,
        limit: u64,
    },
    /// A start function where none is allowed.
    #[error(
        "a {0} declares a start function, which would run at instantiation outside any call \
         (allow_start_functions is false)"
    )]
    StartFunction(&'static str),
    /// The structure could not be read.
    #[error("the module is malformed at byte {offset}: {message}")]
    Malformed { offset: usize, message: String },
}

/// Running totals of one pass.
#[derive(Default)]
struct Totals {
    core_modules: u64,
    components: u64,
    core_instances: u64,
    component_instances: u64,
    functions: u64,
    locals: u64,
    memories: u64,
    tables: u64,
    globals: u64,
    data: u64,
    elems: u64,
    imports: u64,
    exports: u64,
    types: u64,
    type_bytes: u64,
}

/// Per core module: the memories and tables it defines (what the instance pool allocates).
#[derive(Default, Clone, Copy)]
struct PerModule {
    memories: u64,
    tables: u64,
}

fn check(
    found: u64,
    limit: u64,
    what: &'static str,
    limit_name: &'static str,
) -> Result<(), ModuleRefusal> {
    if found > limit {
        Err(ModuleRefusal::OverLimit {
            what,
            limit_name,
            found,
            limit,
        })
    } else {
        Ok(())
    }
}

fn malformed(error: wasmparser::BinaryReaderError) -> ModuleRefusal {
    ModuleRefusal::Malformed {
        offset: error.offset(),
        message: error.message().to_string(),
    }
}

impl ModuleLimits {
    /// Checks `bytes` against every bound in one streaming pass, stopping at the first one
    /// exceeded. A file that passes is not yet known to be valid WebAssembly: the compiler
    /// validates it fully (under its own limits).
    pub fn check_component(&self, bytes: &[u8]) -> Result<(), ModuleRefusal> {
        check(
            bytes.len() as u64,
            self.max_module_bytes as u64,
            "file size in bytes",
            "max_module_bytes",
        )?;
        if bytes.len() < 8 || bytes[0..4] != *b"\0asm" {
            return Err(ModuleRefusal::NotWasm(
                "it does not start with the WebAssembly magic number \\0asm".into(),
            ));
        }
        let mut totals = Totals::default();
        // One entry per module or component being read; `Some` for a core module.
        let mut stack: Vec<Option<PerModule>> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(malformed)?;
            self.account(&payload, &mut totals, &mut stack)?;
        }
        Ok(())
    }

    fn account(
        &self,
        payload: &Payload<'_>,
        totals: &mut Totals,
        stack: &mut Vec<Option<PerModule>>,
    ) -> Result<(), ModuleRefusal> {
        let depth_check = |depth: usize| {
            check(
                depth as u64,
                self.max_nesting_depth as u64,
                "nesting depth of components and modules",
                "max_nesting_depth",
            )
        };
        match payload {
            Payload::Version { encoding, .. } => {
                if stack.is_empty() && *encoding == Encoding::Module {
                    return Err(ModuleRefusal::CoreModule);
                }
                if stack.is_empty() {
                    stack.push(None);
                }
            }
            Payload::ModuleSection { .. } => {
                totals.core_modules += 1;
                check(
                    totals.core_modules,
                    self.max_core_modules as u64,
                    "core modules",
                    "max_core_modules",
                )?;
                stack.push(Some(PerModule::default()));
                depth_check(stack.len())?;
            }
            Payload::ComponentSection { .. } => {
                totals.components += 1;
                check(
                    totals.components,
                    self.max_components as u64,
                    "nested components",
                    "max_components",
                )?;
                stack.push(None);
                depth_check(stack.len())?;
            }
            Payload::End(_) => {
                stack.pop();
            }
            Payload::InstanceSection(reader) => {
                // Only instantiations take an instance slot; a bundle of exports does not.
                for instance in reader.clone() {
                    if let Instance::Instantiate { .. } = instance.map_err(malformed)? {
                        totals.core_instances += 1;
                    }
                }
                check(
                    totals.core_instances,
                    self.max_core_instances as u64,
                    "core instances",
                    "max_core_instances",
                )?;
            }
            Payload::ComponentInstanceSection(reader) => {
                totals.component_instances += u64::from(reader.count());
                check(
                    totals.component_instances,
                    self.max_component_instances as u64,
                    "component instances",
                    "max_component_instances",
                )?;
            }
            Payload::FunctionSection(reader) => {
                totals.functions += u64::from(reader.count());
                self.check_functions(totals.functions)?;
            }
            Payload::CodeSectionStart { count, .. } => {
                // Counted again here only if it claims more than the function section did.
                self.check_functions(u64::from(*count).max(totals.functions))?;
            }
            Payload::CodeSectionEntry(body) => {
                let mut locals = body.get_locals_reader().map_err(malformed)?;
                let mut declared: u64 = 0;
                for _ in 0..locals.get_count() {
                    let (count, _) = locals.read().map_err(malformed)?;
                    declared += u64::from(count);
                    check(
                        declared,
                        self.max_locals_per_function as u64,
                        "locals in one function",
                        "max_locals_per_function",
                    )?;
                }
                totals.locals += declared;
                check(
                    totals.locals,
                    self.max_total_locals,
                    "locals in all functions",
                    "max_total_locals",
                )?;
            }
            Payload::MemorySection(reader) => {
                self.add_memories(u64::from(reader.count()), totals, stack)?;
            }
            Payload::TableSection(reader) => {
                self.add_tables(u64::from(reader.count()), totals, stack)?;
            }
            Payload::GlobalSection(reader) => {
                totals.globals += u64::from(reader.count());
                check(
                    totals.globals,
                    self.max_globals as u64,
                    "globals",
                    "max_globals",
                )?;
            }
            Payload::DataSection(reader) => {
                totals.data += u64::from(reader.count());
                check(
                    totals.data,
                    self.max_data_segments as u64,
                    "data segments",
                    "max_data_segments",
                )?;
            }
            Payload::DataCountSection { count, .. } => {
                check(
                    totals.data + u64::from(*count),
                    self.max_data_segments as u64,
                    "data segments",
                    "max_data_segments",
                )?;
            }
            Payload::ElementSection(reader) => {
                totals.elems += u64::from(reader.count());
                check(
                    totals.elems,
                    self.max_elem_segments as u64,
                    "element segments",
                    "max_elem_segments",
                )?;
            }
            Payload::ImportSection(reader) => {
                // Imported memories and tables are another module's: only the count matters.
                for group in reader.clone() {
                    totals.imports += match group.map_err(malformed)? {
                        Imports::Single(..) => 1,
                        Imports::Compact1 { items, .. } => u64::from(items.count()),
                        Imports::Compact2 { names, .. } => u64::from(names.count()),
                    };
                    self.check_imports(totals.imports)?;
                }
            }
            Payload::ComponentImportSection(reader) => {
                totals.imports += u64::from(reader.count());
                self.check_imports(totals.imports)?;
            }
            Payload::ExportSection(reader) => {
                totals.exports += u64::from(reader.count());
                self.check_exports(totals.exports)?;
            }
            Payload::ComponentExportSection(reader) => {
                totals.exports += u64::from(reader.count());
                self.check_exports(totals.exports)?;
            }
            Payload::TypeSection(reader) => {
                self.add_types(u64::from(reader.count()), reader.range().len(), totals)?;
            }
            Payload::CoreTypeSection(reader) => {
                self.add_types(u64::from(reader.count()), reader.range().len(), totals)?;
            }
            Payload::ComponentTypeSection(reader) => {
                self.add_types(u64::from(reader.count()), reader.range().len(), totals)?;
            }
            Payload::StartSection { .. } if !self.allow_start_functions => {
                return Err(ModuleRefusal::StartFunction("core module"));
            }
            Payload::ComponentStartSection { .. } if !self.allow_start_functions => {
                return Err(ModuleRefusal::StartFunction("component"));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_functions(&self, found: u64) -> Result<(), ModuleRefusal> {
        check(
            found,
            self.max_functions as u64,
            "functions",
            "max_functions",
        )
    }

    fn check_imports(&self, found: u64) -> Result<(), ModuleRefusal> {
        check(found, self.max_imports as u64, "imports", "max_imports")
    }

    fn check_exports(&self, found: u64) -> Result<(), ModuleRefusal> {
        check(found, self.max_exports as u64, "exports", "max_exports")
    }

    fn add_types(
        &self,
        count: u64,
        bytes: usize,
        totals: &mut Totals,
    ) -> Result<(), ModuleRefusal> {
        totals.types += count;
        totals.type_bytes += bytes as u64;
        check(totals.types, self.max_types as u64, "types", "max_types")?;
        check(
            totals.type_bytes,
            self.max_type_bytes as u64,
            "bytes of type definitions",
            "max_type_bytes",
        )
    }

    fn add_memories(
        &self,
        count: u64,
        totals: &mut Totals,
        stack: &mut [Option<PerModule>],
    ) -> Result<(), ModuleRefusal> {
        totals.memories += count;
        if let Some(Some(module)) = stack.last_mut() {
            module.memories += count;
            check(
                module.memories,
                self.max_memories_per_module as u64,
                "linear memories in one core module",
                "max_memories_per_module",
            )?;
        }
        check(
            totals.memories,
            self.max_memories as u64,
            "linear memories",
            "max_memories",
        )
    }

    fn add_tables(
        &self,
        count: u64,
        totals: &mut Totals,
        stack: &mut [Option<PerModule>],
    ) -> Result<(), ModuleRefusal> {
        totals.tables += count;
        if let Some(Some(module)) = stack.last_mut() {
            module.tables += count;
            check(
                module.tables,
                self.max_tables_per_module as u64,
                "tables in one core module",
                "max_tables_per_module",
            )?;
        }
        check(
            totals.tables,
            self.max_tables as u64,
            "tables",
            "max_tables",
        )
    }
}
