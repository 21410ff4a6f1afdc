//! `web_push.testing`: functions for tests and tools, kept off the main table so the Prosody
//! module cannot come to depend on them.

use mlua::prelude::*;
use mlua::Value;

use super::convert::{bytes, failure, json_value, key_arg, subscription_keys, text};
use crate::clock::unix_now;
use crate::endpoint::EndpointPolicy;
use crate::limits;
use crate::retry_after::parse_retry_after;
use crate::vapid::VapidSigner;
use crate::{b64, encrypt, payload};

pub fn table(lua: &Lua) -> LuaResult<LuaTable> {
    let testing = lua.create_table()?;
    testing.set(
        "encrypt",
        lua.create_function(|lua, (p256dh, auth, plaintext): (Value, Value, Value)| {
            let body = subscription_keys(&p256dh, &auth).and_then(|keys| {
                let plaintext = bytes(&plaintext, "plaintext")?;
                encrypt::encrypt(&keys, &plaintext).map_err(|e| e.to_string())
            });
            match body {
                Ok(body) => lua.create_string(&body)?.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    testing.set(
        "decrypt",
        lua.create_function(|lua, (private, auth, body): (Value, Value, Value)| {
            let plaintext = text(&private, "private key")
                .and_then(|private| {
                    b64::decode(&private).ok_or_else(|| "private key is not base64url".to_string())
                })
                .and_then(|private| {
                    let auth = text(&auth, "auth")?;
                    let auth = b64::decode(&auth).ok_or("auth is not base64url")?;
                    let body = bytes(&body, "body")?;
                    encrypt::decrypt(&private, &auth, &body).map_err(|e| e.to_string())
                });
            match plaintext {
                Ok(plaintext) => lua.create_string(&plaintext)?.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    testing.set(
        "vapid_header",
        lua.create_function(
            |lua, (private, endpoint, subject, now): (Value, Value, Value, Option<f64>)| {
                let header = key_arg(&private).and_then(|key| {
                    let endpoint = text(&endpoint, "endpoint")?;
                    let subject = text(&subject, "subject")?;
                    // The audience is the origin; where the endpoint may point is the sender's
                    // business, so this accepts any http(s) URL.
                    let permissive = EndpointPolicy {
                        allow_insecure: true,
                        hosts: None,
                    };
                    let origin = permissive
                        .check(&endpoint)
                        .map_err(|e| e.to_string())?
                        .origin;
                    let signer = VapidSigner::new(&key, &subject).map_err(|e| e.to_string())?;
                    let now = now.map(|n| n.max(0.0) as u64).unwrap_or_else(unix_now);
                    signer.sign(&origin, now).map_err(|e| e.to_string())
                });
                match header {
                    Ok(header) => header.into_lua_multi(lua),
                    Err(message) => failure(lua, message),
                }
            },
        )?,
    )?;
    testing.set(
        "parse_retry_after",
        lua.create_function(|_, value: String| Ok(parse_retry_after(&value, unix_now())))?,
    )?;
    testing.set(
        "fit_payload",
        lua.create_function(|lua, value: Value| {
            let fitted = match value {
                value @ Value::Table(_) => json_value(lua, value).and_then(|json| {
                    payload::fit(json, limits::PAYLOAD).map_err(|e| e.to_string())
                }),
                other => Err(format!(
                    "payload must be a table, not {}",
                    other.type_name()
                )),
            };
            match fitted {
                Ok(json) => lua.create_string(&json)?.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    Ok(testing)
}
