//! Conversion between Lua values and the core's types. Nothing here decides policy.

use mlua::prelude::*;
use mlua::{MultiValue, UserData, UserDataMethods, Value};
use std::time::Duration;

use crate::encrypt::{self, MAX_PLAINTEXT};
use crate::endpoint::EndpointPolicy;
use crate::http::{valid_topic, Urgency};
use crate::keys::VapidKey;
use crate::sender::{Job, Sender, SenderConfig};
use crate::subscription::SubscriptionKeys;
use crate::vapid::{check_subject, unix_now, VapidSigner};
use crate::{b64, outcome};

/// The longest TTL a push service keeps a message (autopush clips to 30 days).
const MAX_TTL: i64 = 30 * 24 * 3600;
const DEFAULT_TTL: u32 = 86_400;

fn failure(lua: &Lua, message: impl std::fmt::Display) -> LuaResult<MultiValue> {
    (Value::Nil, message.to_string()).into_lua_multi(lua)
}

/// A string argument, or a message naming it.
fn text(value: &Value, name: &str) -> Result<String, String> {
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

fn bytes(value: &Value, name: &str) -> Result<Vec<u8>, String> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Nil => Err(format!("{name} is missing")),
        other => Err(format!(
            "{name} must be a string, not {}",
            other.type_name()
        )),
    }
}

fn key_arg(value: &Value) -> Result<VapidKey, String> {
    VapidKey::import(&text(value, "private key")?).map_err(|e| e.to_string())
}

fn policy_from(table: Option<&LuaTable>) -> Result<EndpointPolicy, String> {
    let Some(table) = table else {
        return Ok(EndpointPolicy::default());
    };
    let allow_insecure = match table
        .get::<Value>("allow_insecure")
        .map_err(|e| e.to_string())?
    {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => {
            return Err(format!(
                "allow_insecure must be a boolean, not {}",
                other.type_name()
            ))
        }
    };
    let hosts = match table.get::<Value>("hosts").map_err(|e| e.to_string())? {
        Value::Nil => None,
        Value::Table(list) => {
            let mut hosts = Vec::new();
            for entry in list.sequence_values::<Value>() {
                let entry = entry.map_err(|e| e.to_string())?;
                hosts.push(text(&entry, "hosts entry")?);
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

fn optional_number(table: &LuaTable, field: &str) -> Result<Option<f64>, String> {
    number(
        &table.get::<Value>(field).map_err(|e| e.to_string())?,
        field,
    )
}

fn sender_config(options: &LuaTable) -> Result<SenderConfig, String> {
    let key = key_arg(
        &options
            .get::<Value>("private_key")
            .map_err(|e| e.to_string())?,
    )?;
    let subject = text(
        &options.get::<Value>("subject").map_err(|e| e.to_string())?,
        "subject",
    )?;
    let workers = optional_number(options, "workers")?.unwrap_or(2.0);
    let queue_size = optional_number(options, "queue_size")?.unwrap_or(1000.0);
    let timeout = optional_number(options, "timeout")?.unwrap_or(10.0);
    if !(0.1..=600.0).contains(&timeout) {
        return Err("timeout must be between 0.1 and 600 seconds".into());
    }
    Ok(SenderConfig {
        key,
        subject,
        workers: workers.clamp(0.0, 1e6) as usize,
        queue_size: queue_size.clamp(0.0, 1e9) as usize,
        timeout: Duration::from_secs_f64(timeout),
        // `allow_insecure` and `hosts` sit in the options table itself.
        policy: policy_from(Some(options))?,
    })
}

fn number(value: &Value, name: &str) -> Result<Option<f64>, String> {
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

/// `sender:push`'s arguments: endpoint, p256dh, auth, payload, ttl, urgency, topic. Positional
/// rather than a table: this runs once per push on Prosody's thread, and a table per push is
/// garbage that Prosody's collector (tuned to collect early) pays for many times over.
type PushArgs = (Value, Value, Value, Value, Value, Value, Value);

fn job_from(
    lua: &Lua,
    (endpoint, p256dh, auth, payload, ttl, urgency, topic): PushArgs,
) -> Result<Job, String> {
    let endpoint = text(&endpoint, "endpoint")?;
    let keys = SubscriptionKeys::decode(&text(&p256dh, "p256dh")?, &text(&auth, "auth")?)
        .map_err(|e| e.to_string())?;
    let payload = match payload {
        Value::String(s) => s.as_bytes().to_vec(),
        // Through serde_json's own value: it refuses what JSON cannot say (a string that is not
        // UTF-8, which serialising the Lua value directly would write as an array of bytes).
        value @ Value::Table(_) => {
            let json: serde_json::Value = lua
                .from_value(value)
                .map_err(|e| format!("payload cannot be JSON: {e}"))?;
            serde_json::to_vec(&json).map_err(|e| format!("payload cannot be JSON: {e}"))?
        }
        Value::Nil => return Err("payload is missing".into()),
        other => {
            return Err(format!(
                "payload must be a table or a string, not {}",
                other.type_name()
            ))
        }
    };
    if payload.len() > MAX_PLAINTEXT {
        return Err(format!(
            "payload too large ({} bytes, at most {MAX_PLAINTEXT})",
            payload.len()
        ));
    }
    let ttl = match number(&ttl, "ttl")? {
        None => DEFAULT_TTL,
        Some(ttl) if (0.0..=MAX_TTL as f64).contains(&ttl) => ttl as u32,
        Some(_) => return Err(format!("ttl must be between 0 and {MAX_TTL}")),
    };
    let urgency = match urgency {
        Value::Nil => None,
        value => Some(
            Urgency::parse(&text(&value, "urgency")?)
                .ok_or("urgency must be very-low, low, normal or high")?,
        ),
    };
    let topic = match topic {
        Value::Nil => None,
        value => Some(text(&value, "topic")?),
    };
    if let Some(topic) = &topic {
        if !valid_topic(topic) {
            return Err("topic must be 1 to 32 characters of A-Z, a-z, 0-9".into());
        }
    }
    Ok(Job {
        endpoint,
        keys,
        payload,
        ttl,
        urgency,
        topic,
    })
}

struct LuaSender(Sender);

impl UserData for LuaSender {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("push", |lua, this, args: PushArgs| {
            match job_from(lua, args) {
                Ok(job) => match this.0.push(job) {
                    Ok(id) => id.into_lua_multi(lua),
                    Err(error) => failure(lua, error),
                },
                Err(message) => failure(lua, message),
            }
        });
        // Each result goes to `handler` as arguments, not as a table (no garbage per result).
        // An error from the handler does not lose the results after it: they are handed over
        // too, and the first error is raised at the end.
        methods.add_method("drain", |_, this, handler: LuaFunction| {
            let mut handed = 0usize;
            let mut first_error = None;
            for result in this.0.drain() {
                handed += 1;
                let arguments = (
                    result.id,
                    result.outcome.as_str(),
                    result.status,
                    result.retry_after,
                    result.reason,
                    result.elapsed.as_secs_f64(),
                );
                // A panic coming back through the handler must not lose the results after it.
                let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler.call::<()>(arguments)
                }))
                .unwrap_or_else(|_| Err(LuaError::runtime("result handler panicked")));
                if let Err(error) = called {
                    first_error.get_or_insert(error);
                }
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(handed),
            }
        });
        methods.add_method("fd", |_, this, ()| Ok(this.0.fd()));
        methods.add_method("stats", |lua, this, ()| {
            let stats = this.0.stats();
            let table = lua.create_table()?;
            table.set("queued", stats.queued)?;
            table.set("in_flight", stats.in_flight)?;
            table.set("pushed", stats.pushed)?;
            table.set("refused", stats.refused)?;
            table.set("wakeups", stats.wakeups)?;
            table.set("workers", this.0.live_workers())?;
            Ok(table)
        });
        methods.add_method("close", |_, this, ()| Ok(this.0.close()));
    }
}

#[mlua::lua_module(skip_memory_check)]
fn web_push(lua: &Lua) -> LuaResult<LuaTable> {
    let api = lua.create_table()?;
    api.set("version", env!("CARGO_PKG_VERSION"))?;

    api.set(
        "generate_keypair",
        lua.create_function(|lua, ()| match VapidKey::generate() {
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
            let checked = text(&p256dh, "p256dh").and_then(|p256dh| {
                let auth = text(&auth, "auth")?;
                SubscriptionKeys::decode_and_check(&p256dh, &auth).map_err(|e| e.to_string())
            });
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
        "encrypt",
        lua.create_function(|lua, (p256dh, auth, plaintext): (Value, Value, Value)| {
            let body = text(&p256dh, "p256dh")
                .and_then(|p256dh| {
                    let auth = text(&auth, "auth")?;
                    SubscriptionKeys::decode(&p256dh, &auth).map_err(|e| e.to_string())
                })
                .and_then(|keys| {
                    let plaintext = bytes(&plaintext, "plaintext")?;
                    encrypt::encrypt(&keys, &plaintext).map_err(|e| e.to_string())
                });
            match body {
                Ok(body) => lua.create_string(&body)?.into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    api.set(
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
    api.set(
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
    api.set(
        "parse_retry_after",
        lua.create_function(|_, value: String| Ok(outcome::parse_retry_after(&value, unix_now())))?,
    )?;
    api.set(
        "new_sender",
        lua.create_function(|lua, options: Value| {
            let Value::Table(options) = options else {
                return failure(lua, "options must be a table");
            };
            match sender_config(&options)
                .and_then(|config| Sender::start(config).map_err(|e| e.to_string()))
            {
                Ok(sender) => LuaSender(sender).into_lua_multi(lua),
                Err(message) => failure(lua, message),
            }
        })?,
    )?;
    Ok(api)
}
