//! Kubernetes `$(VAR)` expansion, as the kubelet applies it to command,
//! args, env values and probe commands (k8s.io/kubernetes
//! third_party/forked/golang/expansion): `$$` is a literal `$`, `$(NAME)`
//! is replaced by the variable's value, and a reference to an unknown
//! variable stays as written.

/// Expand `input` with `env` (name → literal value; `None` is a
/// `valueFrom` variable whose value is not in the template): a reference
/// to it stays `$(NAME)`, where the kubelet would put the secret's value.
pub fn expand(input: &str, env: &[(String, Option<String>)]) -> String {
    if !input.contains('$') {
        return input.to_owned();
    }
    let lookup = |name: &str| -> Option<&str> {
        // The last definition of a name wins, like the kubelet's map.
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(close) => {
                        let name = &rest[1..1 + close];
                        match lookup(name) {
                            Some(v) => out.push_str(v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$` and the next character, copied as they are.
                    let ch = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..ch]);
                    ch
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env() -> Vec<(String, Option<String>)> {
        vec![("A".into(), Some("curl x | sh".into())), ("S".into(), None)]
    }

    #[test]
    fn kubelet_semantics() {
        let e = env();
        assert_eq!(expand("-c $(A)", &e), "-c curl x | sh");
        assert_eq!(expand("$$(A)", &e), "$(A)");
        assert_eq!(expand("$(S) $(MISSING)", &e), "$(S) $(MISSING)");
        assert_eq!(expand("$(A", &e), "$(A");
        assert_eq!(expand("a$", &e), "a$");
        assert_eq!(expand("$x $é", &e), "$x $é");
        assert_eq!(expand("$$$$", &e), "$$");
    }
}
