//! The JSON body of a chat completion call, written straight into the bytes sent: the
//! agent's extra parameters, then `model` and the two messages. Nothing is built twice
//! (no intermediate `Value` holding another copy of the payload), which matters when
//! thousands of calls are in flight at once.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The keys hookrun sets itself; an agent parameter of the same name is left out.
const OWN_KEYS: [&str; 2] = ["model", "messages"];

pub struct RequestBody<'a> {
    pub params: &'a Map<String, Value>,
    pub model: &'a str,
    pub system_prompt: &'a str,
    pub user_message: &'a str,
}

impl RequestBody<'_> {
    /// The body as sent, in one allocation sized for it (the message may grow a little
    /// when escaped).
    pub fn to_bytes(&self) -> Vec<u8> {
        let estimate = 128
            + self.model.len()
            + self.system_prompt.len()
            + self.user_message.len() * 9 / 8
            + 64 * self.params.len();
        let mut out = Vec::with_capacity(estimate);
        serde_json::to_writer(&mut out, self).expect("JSON of strings and values");
        out
    }
}

#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.params {
            if !OWN_KEYS.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.serialize_entry("model", self.model)?;
        let messages = [
            Message {
                role: "system",
                content: self.system_prompt,
            },
            Message {
                role: "user",
                content: self.user_message,
            },
        ];
        map.serialize_entry("messages", &messages)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn carries_params_model_and_both_messages_and_keeps_its_own_keys() {
        let params = json!({"temperature": 0.2, "model": "other", "messages": [], "max_tokens": 5});
        let body = RequestBody {
            params: params.as_object().unwrap(),
            model: "gpt-4o-mini",
            system_prompt: "You triage \"alerts\".",
            user_message: r#"{"alert":"disk \"full\"","n":1}"#,
        };
        let sent: Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(
            sent,
            json!({
                "temperature": 0.2,
                "max_tokens": 5,
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You triage \"alerts\"."},
                    {"role": "user", "content": r#"{"alert":"disk \"full\"","n":1}"#},
                ],
            })
        );
    }
}
