//! `${VAR}` in configuration strings, expanded from the environment.

/// What is wrong with a `${…}` reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadReference {
    /// `${NAME}` whose variable `lookup` does not know: the name.
    Unset(String),
    /// `${` with no closing brace, or not a variable name inside: the reference as written.
    Malformed(String),
}

/// Expand every `${NAME}` in `text` with `lookup`; `$$` is a literal `$`. Returns the
/// first reference that does not expand.
pub(crate) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, BadReference> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            // Shown up to the first character a name cannot hold: what follows may be a
            // secret (`${PASS` then the rest of a connection string).
            let malformed = || {
                let shown: String = inner
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect();
                BadReference::Malformed(format!("${{{shown}"))
            };
            let Some(end) = inner.find('}') else {
                return Err(malformed());
            };
            let name = &inner[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(malformed());
            }
            out.push_str(&lookup(name).ok_or_else(|| BadReference::Unset(name.to_string()))?);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expand every string below `value`; `key` is the dotted path of `value`, for the error.
pub(crate) fn expand_value(
    value: &mut toml::Value,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, BadReference)> {
    match value {
        toml::Value::String(text) => {
            *text = expand(text, lookup).map_err(|var| (key.to_string(), var))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(table) => {
            for (name, item) in table.iter_mut() {
                let path = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                expand_value(item, &path, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "HOST_1" => Some("db1".into()),
            _ => None,
        }
    }

    #[rstest]
    #[case("plain", Ok("plain"))]
    #[case("${PASS}", Ok("s3cret"))]
    #[case(
        "postgresql://u:${PASS}@${HOST_1}/app",
        Ok("postgresql://u:s3cret@db1/app")
    )]
    #[case("a${EMPTY}b", Ok("ab"))]
    #[case("cost $5 and $$ and $${PASS}", Ok("cost $5 and $ and ${PASS}"))]
    #[case("${NOPE}", Err(BadReference::Unset("NOPE".into())))]
    #[case("x ${PASS} ${ALSO_NOPE}", Err(BadReference::Unset("ALSO_NOPE".into())))]
    #[case("${1BAD}", Err(BadReference::Malformed("${1BAD".into())))]
    #[case("${OPEN", Err(BadReference::Malformed("${OPEN".into())))]
    #[case("/home/${USER/x", Err(BadReference::Malformed("${USER".into())))]
    #[case("u:${PASS hunter2@h", Err(BadReference::Malformed("${PASS".into())))]
    fn expands_variables(#[case] text: &str, #[case] expected: Result<&str, BadReference>) {
        assert_eq!(expand(text, &env), expected.map(str::to_string));
    }

    #[test]
    fn names_the_key_of_an_unset_variable() {
        let mut value: toml::Value =
            toml::from_str("[sets.db]\nconninfo = \"ok\"\nlist = [\"a\", \"${GONE}\"]").unwrap();
        let err = expand_value(&mut value, "", &env).unwrap_err();
        assert_eq!(
            err,
            (
                "sets.db.list[1]".to_string(),
                BadReference::Unset("GONE".to_string())
            )
        );
    }
}
