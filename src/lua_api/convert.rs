//! Lua values to the core's types, with messages that name the argument. Nothing here decides
//! policy.

use mlua::prelude::*;
use mlua::{MultiValue, Value};

use std::time::Duration;

use crate::endpoint::EndpointPolicy;
use crate::keys::VapidKey;
use crate::limits::{self, Bound};
use crate::subscription::SubscriptionKeys;

pub fn failure(lua: &Lua, message: impl std::fmt::Display) -> LuaResult<MultiValue> {
    (Value::Nil, message.to_string()).into_lua_multi(lua)
}

/// A string argument, or a message naming it.
pub fn text(value: &Value, name: &str) -> Result<String, String> {
    match value {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| format!("{name} is not valid UTF-8")),
        Value::Nil => Err(format!("{name} is missing")),
        other => Err(format!(
            "{name} must be a string, not {}",
            other.type_name()
        )),
    }
}

/// A string argument as the key decoder takes it, without a copy.
pub fn with_str<T>(
    value: &Value,
    name: &str,
    use_it: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    match value {
        Value::String(s) => {
            let borrowed = s
                .to_str()
                .map_err(|_| format!("{name} is not valid UTF-8"))?;
            use_it(&borrowed)
        }
        other => text(other, name).and_then(|owned| use_it(&owned)),
    }
}

pub fn optional_text(value: &Value, name: &str) -> Result<Option<String>, String> {
    match value {
        Value::Nil => Ok(None),
        other => text(other, name).map(Some),
    }
}

/// A string argument as raw bytes (any bytes, not only UTF-8).
pub fn bytes(value: &Value, name: &str) -> Result<Vec<u8>, String> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => text(other, name).map(String::into_bytes),
    }
}

pub fn number(value: &Value, name: &str) -> Result<Option<f64>, String> {
    match value {
        Value::Nil => Ok(None),
        Value::Integer(i) => Ok(Some(*i as f64)),
        Value::Number(n) if n.is_finite() => Ok(Some(*n)),
        other => Err(format!(
            "{name} must be a number, not {}",
            other.type_name()
        )),
    }
}

/// A duration in seconds: `default` when absent, else within `bound` (named after it).
pub fn seconds(value: &Value, bound: Bound, default: Duration) -> Result<Duration, String> {
    match number(value, bound.name)? {
        None => Ok(default),
        Some(seconds) => limits::check(bound, seconds)
            .map(Duration::from_secs_f64)
            .map_err(|e| e.to_string()),
    }
}

/// A subscription's keys, decoded (their lengths checked, not whether p256dh is on the curve).
pub fn subscription_keys(p256dh: &Value, auth: &Value) -> Result<SubscriptionKeys, String> {
    with_str(p256dh, "p256dh", |p256dh| {
        with_str(auth, "auth", |auth| {
            SubscriptionKeys::decode(p256dh, auth).map_err(|e| e.to_string())
        })
    })
}

pub fn field(table: &LuaTable, name: &str) -> Result<Value, String> {
    table.get::<Value>(name).map_err(|e| e.to_string())
}

pub fn key_arg(value: &Value) -> Result<VapidKey, String> {
    VapidKey::import(&text(value, "private key")?).map_err(|e| e.to_string())
}

pub fn policy_from(table: Option<&LuaTable>) -> Result<EndpointPolicy, String> {
    let Some(table) = table else {
        return Ok(EndpointPolicy::default());
    };
    let allow_insecure = match field(table, "allow_insecure")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => {
            return Err(format!(
                "allow_insecure must be a boolean, not {}",
                other.type_name()
            ))
        }
    };
    let hosts = match field(table, "hosts")? {
        Value::Nil => None,
        Value::Table(list) => {
            let mut hosts = Vec::new();
            for entry in list.sequence_values::<Value>() {
                let entry = entry.map_err(|e| e.to_string())?;
                hosts.push(text(&entry, "hosts entry")?.into());
            }
            Some(hosts)
        }
        other => return Err(format!("hosts must be a list, not {}", other.type_name())),
    };
    Ok(EndpointPolicy {
        allow_insecure,
        hosts,
    })
}

/// A Lua table as JSON, through serde_json's own value: it refuses what JSON cannot say (a
/// string that is not UTF-8, which serialising the Lua value directly would write as bytes).
pub fn json_value(lua: &Lua, value: Value) -> Result<serde_json::Value, String> {
    lua.from_value(value)
        .map_err(|e| format!("payload cannot be JSON: {e}"))
}
