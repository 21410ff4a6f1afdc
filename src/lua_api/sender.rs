//! `web_push.new_sender` and the sender's methods, as Lua sees them.

use mlua::prelude::*;
use mlua::{MultiValue, UserData, UserDataMethods, Value};

use super::convert::{
    failure, field, json_value, key_arg, number, optional_text, policy_from, seconds,
    subscription_keys, text,
};
use crate::b64;
use crate::limits::{self, Urgency};
use crate::sender::{ExportedJob, NewJob, Payload, Sender, SenderConfig};

/// A count option: its default when absent, else a whole number within its bound.
fn count(options: &LuaTable, bound: limits::Bound, default: usize) -> Result<usize, String> {
    match number(&field(options, bound.name)?, bound.name)? {
        None => Ok(default),
        Some(n) if n.fract() == 0.0 => {
            Ok(limits::check(bound, n).map_err(|e| e.to_string())? as usize)
        }
        Some(_) => Err(format!("{} must be a whole number", bound.name)),
    }
}

pub fn sender_config(options: &LuaTable) -> Result<SenderConfig, String> {
    let key = key_arg(&field(options, "private_key")?)?;
    let subject = text(&field(options, "subject")?, "subject")?;
    let workers = count(options, limits::WORKERS, limits::DEFAULT_WORKERS)?;
    let queue_size = count(options, limits::QUEUE_SIZE, limits::DEFAULT_QUEUE_SIZE)?;
    let timeout = seconds(
        &field(options, limits::TIMEOUT.name)?,
        limits::TIMEOUT,
        limits::DEFAULT_TIMEOUT,
    )?;
    Ok(SenderConfig {
        key,
        subject,
        workers,
        queue_size,
        timeout,
        // `allow_insecure` and `hosts` sit in the options table itself.
        policy: policy_from(Some(options))?,
    })
}

fn urgency(value: &Value) -> Result<Option<Urgency>, String> {
    match optional_text(value, "urgency")? {
        None => Ok(None),
        Some(name) => Urgency::parse(&name)
            .map(Some)
            .ok_or_else(|| format!("urgency must be {}", Urgency::NAMES)),
    }
}

/// `sender:push`'s arguments: account, endpoint, p256dh, auth, payload, ttl, urgency,
/// conversation. Positional rather than a table: this runs once per push on Prosody's thread,
/// and a table per push is garbage that Prosody's collector (tuned to collect early) pays for
/// many times over.
type PushArgs = (Value, Value, Value, Value, Value, Value, Value, Value);

fn new_job(
    lua: &Lua,
    (account, endpoint, p256dh, auth, payload, ttl, urgency_value, conversation): PushArgs,
) -> Result<NewJob, String> {
    let payload = match payload {
        Value::String(s) => Payload::Json(s.as_bytes().to_vec()),
        value @ Value::Table(_) => Payload::Value(json_value(lua, value)?),
        Value::Nil => return Err("payload is missing".into()),
        other => {
            return Err(format!(
                "payload must be a table or a string, not {}",
                other.type_name()
            ))
        }
    };
    Ok(NewJob {
        account: text(&account, "account")?,
        endpoint: text(&endpoint, "endpoint")?,
        keys: subscription_keys(&p256dh, &auth)?,
        payload,
        ttl: seconds(&ttl, limits::TTL, limits::DEFAULT_TTL)?,
        urgency: urgency(&urgency_value)?,
        conversation: optional_text(&conversation, "conversation")?,
    })
}

fn exported_from(table: &LuaTable) -> Result<ExportedJob, String> {
    let expires = number(&field(table, "expires")?, "expires")?.ok_or("expires is missing")?;
    let attempts = number(&field(table, "attempts")?, "attempts")?.unwrap_or(0.0);
    Ok(ExportedJob {
        account: text(&field(table, "account")?, "account")?,
        endpoint: text(&field(table, "endpoint")?, "endpoint")?,
        keys: subscription_keys(&field(table, "p256dh")?, &field(table, "auth")?)?,
        payload: text(&field(table, "payload")?, "payload")?.into_bytes(),
        expires: expires.max(0.0) as u64,
        urgency: urgency(&field(table, "urgency")?)?,
        conversation: optional_text(&field(table, "conversation")?, "conversation")?,
        attempts: attempts.clamp(0.0, f64::from(u32::MAX)) as u32,
    })
}

fn exported_to(lua: &Lua, job: ExportedJob) -> LuaResult<LuaTable> {
    let table = lua.create_table()?;
    table.set("account", job.account)?;
    table.set("endpoint", job.endpoint)?;
    table.set("p256dh", b64::encode(&job.keys.p256dh))?;
    table.set("auth", b64::encode(&job.keys.auth))?;
    table.set("payload", lua.create_string(&job.payload)?)?;
    table.set("expires", job.expires)?;
    table.set("urgency", job.urgency.map(Urgency::as_str))?;
    table.set("conversation", job.conversation)?;
    table.set("attempts", job.attempts)?;
    Ok(table)
}

fn id_or_failure(lua: &Lua, pushed: Result<u64, String>) -> LuaResult<MultiValue> {
    match pushed {
        Ok(id) => id.into_lua_multi(lua),
        Err(message) => failure(lua, message),
    }
}

pub struct LuaSender(pub Sender);

impl UserData for LuaSender {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("push", |lua, this, args: PushArgs| {
            let pushed =
                new_job(lua, args).and_then(|job| this.0.push(job).map_err(|e| e.to_string()));
            id_or_failure(lua, pushed)
        });
        methods.add_method("resume", |lua, this, job: Value| {
            let resumed = match &job {
                Value::Table(table) => exported_from(table),
                other => Err(format!("job must be a table, not {}", other.type_name())),
            }
            .and_then(|job| this.0.resume(job).map_err(|e| e.to_string()));
            id_or_failure(lua, resumed)
        });
        methods.add_method(
            "cancel",
            |lua, this, (account, endpoint, conversation): (Value, Value, Value)| {
                let selection = text(&account, "account").and_then(|account| {
                    let endpoint = optional_text(&endpoint, "endpoint")?;
                    let conversation = optional_text(&conversation, "conversation")?;
                    Ok((account, endpoint, conversation))
                });
                match selection {
                    Ok((account, endpoint, conversation)) => this
                        .0
                        .cancel(&account, endpoint.as_deref(), conversation.as_deref())
                        .into_lua_multi(lua),
                    Err(message) => failure(lua, message),
                }
            },
        );
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
                    result.reason,
                    result.attempts,
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
        methods.add_method("export", |lua, this, ()| {
            let list = lua.create_table()?;
            for job in this.0.export() {
                list.push(exported_to(lua, job)?)?;
            }
            Ok(list)
        });
        methods.add_method("fd", |_, this, ()| Ok(this.0.fd()));
        methods.add_method("stats", |lua, this, ()| {
            let stats = this.0.stats();
            let table = lua.create_table()?;
            table.set("queued", stats.counts.queued)?;
            table.set("parked", stats.counts.parked)?;
            table.set("waiting", stats.counts.waiting)?;
            table.set("in_flight", stats.counts.in_flight)?;
            table.set("stuck", stats.counts.stuck)?;
            table.set("workers", stats.counts.workers)?;
            table.set("pushed", stats.pushed)?;
            table.set("refused", stats.refused)?;
            table.set("wakeups", stats.wakeups)?;
            table.set("restarts", stats.restarts)?;
            Ok(table)
        });
        methods.add_method("close", |_, this, ()| Ok(this.0.close()));
    }
}

pub fn new_sender(lua: &Lua, options: Value) -> LuaResult<MultiValue> {
    let Value::Table(options) = options else {
        return failure(lua, "options must be a table");
    };
    match sender_config(&options)
        .and_then(|config| Sender::start(config).map_err(|e| e.to_string()))
    {
        Ok(sender) => LuaSender(sender).into_lua_multi(lua),
        Err(message) => failure(lua, message),
    }
}
