//! The C API's tests, one binary (issue #14.5): the API called through raw pointers as C
//! calls it, the audit log as the runtime's sink, the C example compiled and run (under
//! valgrind too), and the checked-in header against cbindgen.

mod audit_log;
mod c_example;
mod ffi;
mod header;
mod support;
