//! Checks events against the documented schema (`events.schema.json`, served
//! at `/api/v1/events/schema`): the subset of JSON Schema it is written in
//! (`$ref` to `#/$defs/...`, `oneOf`, `const`, `enum`, `type`, `format`
//! uuid and date-time, `minimum`/`maximum`, `required`, `properties`,
//! `additionalProperties: false`). Every SSE frame a test receives goes
//! through it (see `stack::SseClient`).

use serde_json::Value;

pub struct Schema {
    root: Value,
}

impl Schema {
    /// The schema the api serves.
    pub fn documented() -> Schema {
        Schema {
            root: serde_json::from_str(oec_common::events::SCHEMA).expect("the schema is JSON"),
        }
    }

    /// Checks one SSE frame: its `event:` name and its `data:`.
    pub fn check_frame(&self, event: &str, data: &str) -> Result<(), String> {
        let v: Value =
            serde_json::from_str(data).map_err(|e| format!("{event}: data is not JSON: {e}"))?;
        if event == "connected" {
            return self.check(&self.root["$defs"]["connected"], &v, "connected");
        }
        if v["type"] != event {
            return Err(format!("`event: {event}` carries type {}", v["type"]));
        }
        self.check(&self.root, &v, event)
    }

    /// Checks a value against the whole schema.
    pub fn check_event(&self, v: &Value) -> Result<(), String> {
        self.check(&self.root, v, "event")
    }

    fn check(&self, s: &Value, v: &Value, at: &str) -> Result<(), String> {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/$defs/")
                .ok_or_else(|| format!("{at}: unsupported $ref {r}"))?;
            let def = self.root["$defs"]
                .get(name)
                .ok_or_else(|| format!("{at}: no definition {name}"))?;
            return self.check(def, v, at);
        }
        if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|o| self.check(o, v, at).err())
                .collect();
            let matched = options.len() - errors.len();
            if matched != 1 {
                return Err(format!(
                    "{at}: matches {matched} of oneOf's {} options: {}",
                    options.len(),
                    errors.join("; ")
                ));
            }
        }
        if let Some(c) = s.get("const")
            && c != v
        {
            return Err(format!("{at}: {v} is not {c}"));
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.iter().any(|t| is_type(v, t)) {
                return Err(format!("{at}: {v} is not of type {types:?}"));
            }
        }
        if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
            let ok = match f {
                "uuid" => text.parse::<uuid::Uuid>().is_ok(),
                "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                _ => true,
            };
            if !ok {
                return Err(format!("{at}: {text:?} is not a {f}"));
            }
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                return Err(format!("{at}: {n} < {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                return Err(format!("{at}: {n} > {max}"));
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for key in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(key) {
                    return Err(format!("{at}: `{key}` is missing"));
                }
            }
            for (key, value) in obj {
                match props.and_then(|p| p.get(key)) {
                    Some(sub) => self.check(sub, value, &format!("{at}.{key}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{at}: `{key}` is not in the schema"));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}
