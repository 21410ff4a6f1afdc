//! The Lua-facing API of mod_web_push's native core: argument conversion and error values only.
//! Expected failures come back Lua-style as `nil, "message"`; see doc/native-api.md.

pub mod b64;
pub mod deadline;
pub mod encrypt;
pub mod endpoint;
pub mod guard;
pub mod http;
pub mod keys;
pub mod outcome;
pub mod sender;
pub mod subscription;
pub mod vapid;

mod lua_api;
