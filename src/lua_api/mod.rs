//! The Lua-facing API (`web_push`): argument conversion and error values only. Expected
//! failures come back Lua-style as `nil, "message"`; see doc/native-api.md.

mod convert;
mod sender;
mod testing;

use mlua::prelude::*;
use mlua::Value;

use self::convert::{failure, key_arg, policy_from, subscription_keys, text};
use crate::limits::{self, Bound};
use crate::vapid::check_subject;

fn bound_table(lua: &Lua, bound: Bound) -> LuaResult<LuaTable> {
    let pair = lua.create_table()?;
    // Whole-number bounds stay integers in Lua.
    let number = |n: f64| {
        if n.fract() == 0.0 {
            Value::Integer(n as i64)
        } else {
            Value::Number(n)
        }
    };
    pair.push(number(bound.min))?;
    pair.push(number(bound.max))?;
    Ok(pair)
}

fn limits_table(lua: &Lua) -> LuaResult<LuaTable> {
    let table = lua.create_table()?;
    for bound in [
        limits::WORKERS,
        limits::QUEUE_SIZE,
        limits::TIMEOUT,
        limits::TTL,
    ] {
        table.set(bound.name, bound_table(lua, bound)?)?;
    }
    table.set("payload", limits::PAYLOAD)?;
    Ok(table)
}

#[mlua::lua_module(skip_memory_check)]
fn web_push(lua: &Lua) -> LuaResult<LuaTable> {
    let api = lua.create_table()?;
    api.set("version", env!("CARGO_PKG_VERSION"))?;
    api.set("limits", limits_table(lua)?)?;
    api.set("testing", testing::table(lua)?)?;

    api.set(
        "generate_keypair",
        lua.create_function(|lua, ()| match crate::keys::VapidKey::generate() {
            Ok(key) => (key.scalar_b64(), key.public_b64()).into_lua_multi(lua),
            Err(error) => failure(lua, error),
        })?,
    )?;
    api.set(
        "import_private_key",
        lua.create_function(|lua, text: Value| match key_arg(&text) {
            Ok(key) => (key.scalar_b64(), key.public_b64()).into_lua_multi(lua),
            Err(message) => failure(lua, message),
        })?,
    )?;
    api.set(
        "export_private_key_pem",
        lua.create_function(|lua, private: Value| {
            match key_arg(&private).and_then(|key| key.to_pkcs8_pem().map_err(|e| e.to_string())) {
                Ok(pem) => pem.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    api.set(
        "public_key",
        lua.create_function(|lua, private: Value| match key_arg(&private) {
            Ok(key) => key.public_b64().into_lua_multi(lua),
            Err(message) => failure(lua, message),
        })?,
    )?;
    api.set(
        "check_subscription",
        lua.create_function(|lua, (p256dh, auth): (Value, Value)| {
            let checked = subscription_keys(&p256dh, &auth)
                .and_then(|keys| keys.check_point().map_err(|e| e.to_string()));
            match checked {
                Ok(_) => true.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    api.set(
        "check_endpoint",
        lua.create_function(|lua, (endpoint, policy): (Value, Option<LuaTable>)| {
            let policy = match policy_from(policy.as_ref()) {
                Ok(policy) => policy,
                Err(message) => return (Value::Nil, "bad-request", message).into_lua_multi(lua),
            };
            let endpoint = match &endpoint {
                Value::Nil => String::new(),
                other => match text(other, "endpoint") {
                    Ok(endpoint) => endpoint,
                    Err(message) => {
                        return (Value::Nil, "bad-request", message).into_lua_multi(lua)
                    }
                },
            };
            match policy.check(&endpoint) {
                Ok(_) => true.into_lua_multi(lua),
                Err(error) => {
                    (Value::Nil, error.condition(), error.to_string()).into_lua_multi(lua)
                }
            }
        })?,
    )?;
    api.set(
        "check_subject",
        lua.create_function(|lua, subject: Value| {
            match text(&subject, "subject")
                .and_then(|s| check_subject(&s).map_err(|e| e.to_string()))
            {
                Ok(()) => true.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    api.set("new_sender", lua.create_function(sender::new_sender)?)?;
    Ok(api)
}
