//! Template text as written in connector files: the seed's single-brace `{field}` form,
//! `${NAME}` secret references, and the pure syntax checks run during validation.

/// Is `name` a valid secret name (`ARC_TOKEN`: upper case, digits, underscores)?
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `text` with every `${NAME}` replaced by `with(NAME)`; other text (including `$` and
/// `${not a name}`) is kept as it is.
pub fn replace_secret_refs(text: &str, mut with: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_secret_name(&after[..end]) => {
                out.push_str(&rest[..start]);
                out.push_str(&with(&after[..end]));
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The names of every `${NAME}` in `text`, in order of appearance.
pub fn secret_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    replace_secret_refs(text, |name| {
        out.push(name.to_string());
        String::new()
    });
    out
}

/// The seed writes URLs as `…/roadwork/{permitId}`; this turns each lone `{name}` into
/// `{{ name }}`. `{{ … }}`, `{% … %}` and `${NAME}` are left as they are.
pub fn url_to_template(url: &str) -> String {
    let bytes = url.as_bytes();
    let mut out = String::with_capacity(url.len() + 8);
    let mut i = 0;
    while i < url.len() {
        let c = bytes[i];
        let lone_open = c == b'{'
            && bytes.get(i + 1).is_some_and(|n| *n != b'{' && *n != b'%')
            && (i == 0 || (bytes[i - 1] != b'$' && bytes[i - 1] != b'{'));
        if lone_open && let Some(len) = url[i + 1..].find('}') {
            let name = &url[i + 1..i + 1 + len];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                out.push_str("{{ ");
                out.push_str(name);
                out.push_str(" }}");
                i += len + 2;
                continue;
            }
        }
        // Copy one UTF-8 character.
        let ch = url[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Checks that `source` compiles as a template; the error says why and where in the text.
pub fn check_template(source: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// Checks that `expr` compiles as a filter expression.
pub fn check_expression(expr: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.compile_expression(expr).map(|_| ()).map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) if line > 1 => format!("{what} (template line {line})"),
        _ => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_braces_become_placeholders() {
        assert_eq!(url_to_template("https://x/roadwork/{permitId}"), "https://x/roadwork/{{ permitId }}");
        assert_eq!(url_to_template("https://x/{{ a }}/{b.c}"), "https://x/{{ a }}/{{ b.c }}");
        assert_eq!(url_to_template("https://x/${TOKEN}/{id}"), "https://x/${TOKEN}/{{ id }}");
        assert_eq!(url_to_template("https://x/{% if a %}y{% endif %}"), "https://x/{% if a %}y{% endif %}");
        assert_eq!(url_to_template("https://x/{not valid}"), "https://x/{not valid}");
    }

    #[test]
    fn secret_references() {
        assert_eq!(secret_refs("Bearer ${ARC_TOKEN} ${lower} ${B2}"), vec!["ARC_TOKEN", "B2"]);
        assert!(secret_refs("no secrets {{ a }}").is_empty());
    }

    #[test]
    fn syntax_checks() {
        assert!(check_template("x {{ a }}").is_ok());
        assert!(check_template("x {{ a").is_err());
        assert!(check_expression("object.agency == \"DDOT\"").is_ok());
        assert!(check_expression("object.agency ==").is_err());
    }
}
