//! The native core of mod_web_push: RFC 8291 encryption, RFC 8292 VAPID and a sender that posts
//! to push services on its own threads. `lua_api` is the Lua-facing side (argument conversion
//! and error values only); see doc/native-api.md.

pub mod b64;
pub mod clock;
pub mod conversation;
pub mod encrypt;
pub mod endpoint;
pub mod guard;
pub mod http;
pub mod keys;
pub mod limits;
pub mod outcome;
pub mod payload;
pub mod retry;
pub mod retry_after;
pub mod sender;
pub mod subscription;
pub mod transport;
pub mod vapid;

mod lua_api;
