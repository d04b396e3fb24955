//! Validation of `[alerts]`: the webhooks told about state changes, and how
//! hard delivery tries.

use std::collections::HashMap;

use super::checker::{at_line, duration, int_in, Checker};
use crate::raw::{RawAlerts, Slot};
use crate::webhook::WebhookUrl;
use crate::Alerts;

const MAX_ATTEMPTS: i64 = 20;

pub(super) fn alerts(c: &mut Checker, raw: RawAlerts) -> Option<Alerts> {
    let at = &raw.at;
    let defaults = Alerts::default();
    let webhooks = match raw.webhooks {
        Slot::Missing => Some(defaults.webhooks),
        Slot::Invalid => None,
        Slot::Set(field) => webhooks(c, &at.path_of("webhooks"), field.value),
    };
    let timeout = c.optional(at, "timeout", raw.timeout, defaults.timeout, duration);
    let max_attempts = c.optional(
        at,
        "max_attempts",
        raw.max_attempts,
        defaults.max_attempts,
        int_in(1, MAX_ATTEMPTS),
    );
    Some(Alerts {
        webhooks: webhooks?,
        timeout: timeout?.value,
        max_attempts: max_attempts?.value,
    })
}

/// Every URL is checked, each error at `webhooks[i]`. The same endpoint
/// twice (however written) would get every alert twice, so it is an error.
fn webhooks(c: &mut Checker, path: &str, raw: Vec<Slot<String>>) -> Option<Vec<String>> {
    // normal form → (path, line) of its first use
    let mut seen: HashMap<String, (String, Option<usize>)> = HashMap::new();
    let mut valid = Some(Vec::new());
    for (i, slot) in raw.into_iter().enumerate() {
        let Slot::Set(field) = slot else {
            valid = None;
            continue;
        };
        let element_path = format!("{path}[{i}]");
        let url = match WebhookUrl::parse(&field.value) {
            Ok(url) => url,
            Err(message) => {
                c.error(element_path, field.line, message);
                valid = None;
                continue;
            }
        };
        if let Some((first_path, first_line)) = seen.get(&url.to_string()) {
            let message = format!(
                "duplicate webhook {:?}: the same endpoint as {first_path}{}, so every \
                 alert would be sent twice",
                field.value,
                at_line(*first_line)
            );
            c.error(element_path, field.line, message);
            valid = None;
            continue;
        }
        seen.insert(url.to_string(), (element_path, field.line));
        if let Some(valid) = &mut valid {
            valid.push(field.value);
        }
    }
    valid
}
