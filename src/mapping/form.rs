//! `application/x-www-form-urlencoded` bodies, nested the way Stripe (and Rails, PHP) read
//! them: `metadata[key]=value`, `items[0][price]=…`. A value that must reach the API as JSON
//! text (ArcGIS's `applyEdits` takes `updates=[{…}]`) is rendered to a string by its
//! template (`{{ features | tojson }}`) and written as that string.

use serde_json::Value;

/// The form for a body shape: an object's fields in name order, nested objects and arrays as
/// bracketed keys; `null` fields are left out; a body that is not an object is one field
/// `value`.
pub fn encode(body: &Value) -> String {
    let mut pairs = Vec::new();
    match body {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(k, v, &mut pairs);
            }
        }
        other => flatten("value", other, &mut pairs),
    }
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((key.to_string(), b.to_string())),
        Value::Number(n) => out.push((key.to_string(), n.to_string())),
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), v, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}[{k}]"), v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::encode;

    #[test]
    fn stripe_style_nesting_byte_for_byte() {
        // Stripe's invoice item update (https://docs.stripe.com/api/invoiceitems/update,
        // API version 2024-06-20): amounts, nested metadata, arrays of objects.
        let body = json!({"amount": 2500, "currency": "usd", "description": "Lane closure fee RW-481", "metadata": {"permit": "RW-481", "agency": "DDOT"}, "discounts": [{"coupon": "GOV"}], "skip": null, "live": true});
        assert_eq!(
            encode(&body),
            "amount=2500&currency=usd&description=Lane+closure+fee+RW-481&discounts%5B0%5D%5Bcoupon%5D=GOV&live=true&metadata%5Bagency%5D=DDOT&metadata%5Bpermit%5D=RW-481"
        );
    }

    #[test]
    fn a_json_text_field_is_written_as_text() {
        // ArcGIS applyEdits (https://developers.arcgis.com/rest/services-reference/enterprise/apply-edits-feature-service-layer/):
        // `updates` is JSON text, `f=json`.
        let body = json!({"f": "json", "updates": "[{\"attributes\":{\"OBJECTID\":7,\"status\":\"APPROVED\"}}]"});
        assert_eq!(encode(&body), "f=json&updates=%5B%7B%22attributes%22%3A%7B%22OBJECTID%22%3A7%2C%22status%22%3A%22APPROVED%22%7D%7D%5D");
    }
}
