//! Interpreter inline code (`python -c`, `perl -e`, `ruby -e`, `node -e`,
//! `php -r`, `pwsh -c|-enc`, `lua -e`): which flag carries code, and the
//! API combinations that make a one-liner a download-and-execute, an
//! encoded payload, a reverse shell or a credential theft. Shell commands
//! inside string literals are handed back to the shell analysis.

use super::Category;
pub use super::words::Lang;
use super::words::{credential, host_of, is_api_server};

/// What an interpreter argument is.
pub enum Flag<'a> {
    /// Inline code follows (or is attached: `-e'…'`).
    Code(Option<&'a str>),
    /// PowerShell `-EncodedCommand`: base64 of the command.
    Encoded,
    /// A module loaded before the code (`perl -MIO::Socket`, `ruby -rsocket`).
    Module(Option<&'a str>),
    /// An option whose value is the next argument.
    Value,
    /// `-`: the program comes from stdin.
    Stdin,
    Other,
    /// The script file (or, for PowerShell, the command words).
    Operand,
}

pub fn flag(lang: Lang, a: &str) -> Flag<'_> {
    if a == "-" {
        return Flag::Stdin;
    }
    if !a.starts_with('-') || a.len() < 2 {
        return Flag::Operand;
    }
    match lang {
        Lang::PowerShell => {
            let lower = a.trim_start_matches(['-', '/']).to_ascii_lowercase();
            if lower.is_empty() {
                return Flag::Other;
            }
            if "encodedcommand".starts_with(&lower)
                && lower.starts_with('e')
                && lower != "ex"
                && lower != "exe"
                && lower != "exec"
                || lower == "ec"
            {
                return Flag::Encoded;
            }
            if "command".starts_with(&lower) && lower.starts_with('c') && lower != "config" {
                return Flag::Code(None);
            }
            if [
                "executionpolicy",
                "windowstyle",
                "file",
                "configurationname",
                "workingdirectory",
                "outputformat",
                "inputformat",
                "version",
                "psconsolefile",
                "settingsfile",
            ]
            .iter()
            .any(|o| o.starts_with(&lower))
                || lower == "ep"
            {
                return Flag::Value;
            }
            Flag::Other
        }
        Lang::Python => {
            let flags = &a[1..];
            if flags.starts_with('-') {
                return if a == "--command" {
                    Flag::Code(None)
                } else {
                    Flag::Other
                };
            }
            // Options cluster until one that takes a value: `-uc CODE`, `-cCODE`.
            for (i, c) in flags.char_indices() {
                let rest = &flags[i + c.len_utf8()..];
                match c {
                    'c' => return Flag::Code((!rest.is_empty()).then_some(rest)),
                    'm' => return Flag::Module((!rest.is_empty()).then_some(rest)),
                    'W' | 'X' => {
                        return if rest.is_empty() {
                            Flag::Value
                        } else {
                            Flag::Other
                        };
                    }
                    _ => {}
                }
            }
            Flag::Other
        }
        Lang::Perl | Lang::Ruby | Lang::Lua => {
            let flags = &a[1..];
            if flags.starts_with('-') {
                return Flag::Other;
            }
            for (i, c) in flags.char_indices() {
                let rest = &flags[i + c.len_utf8()..];
                match c {
                    'e' | 'E' => return Flag::Code((!rest.is_empty()).then_some(rest)),
                    'M' | 'm' if lang == Lang::Perl => {
                        return Flag::Module((!rest.is_empty()).then_some(rest));
                    }
                    'r' if lang == Lang::Ruby => {
                        return Flag::Module((!rest.is_empty()).then_some(rest));
                    }
                    'l' if lang == Lang::Lua => {
                        return Flag::Module((!rest.is_empty()).then_some(rest));
                    }
                    'I' | 'C' | 'x' | 'i' | '0' => return Flag::Other,
                    _ => {}
                }
            }
            Flag::Other
        }
        Lang::Node => match a {
            "-e" | "--eval" | "-p" | "--print" => Flag::Code(None),
            "-r" | "--require" | "--import" | "--loader" => Flag::Module(None),
            _ => a
                .strip_prefix("--eval=")
                .or_else(|| a.strip_prefix("--print="))
                .map_or(Flag::Other, |c| Flag::Code(Some(c))),
        },
        Lang::Php => match a {
            "-r" | "-B" | "-R" | "-E" => Flag::Code(None),
            "-f" | "-c" | "-d" | "-z" => Flag::Value,
            _ => a
                .strip_prefix("-r")
                .map_or(Flag::Other, |c| Flag::Code(Some(c))),
        },
    }
}

/// Per language: fetch, run, decode, socket and spawn calls.
type Needles = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// Combinations of calls that make the code one of the categories.
pub fn analyze(lang: Lang, code: &str) -> Vec<(Category, String)> {
    let lower = code.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let mut out = Vec::new();
    let (fetch, run, decode, socket, spawn): Needles = match lang {
        Lang::Python => (
            &[
                "urlopen",
                "urllib",
                "requests.get",
                "requests.post",
                "http.client",
                "urlretrieve",
                "httpx.",
            ],
            &["exec(", "eval(", "compile(", "exec (", "eval ("],
            &[
                "b64decode",
                "base64.",
                "codecs.decode",
                "bytes.fromhex",
                "zlib.decompress",
                "marshal.loads",
                "decode('hex')",
                "a2b_",
            ],
            &["socket.socket", "socket(", "create_connection"],
            &[
                "subprocess",
                "pty.spawn",
                "os.dup2",
                "os.system",
                "os.popen",
                "/bin/sh",
                "/bin/bash",
                "os.exec",
            ],
        ),
        Lang::Perl => (
            &[
                "lwp::simple",
                "lwp::useragent",
                "http::tiny",
                "getstore(",
                "get(\"http",
                "get('http",
                "io::socket::ssl",
            ],
            &["eval", "system", "exec", "`"],
            &[
                "decode_base64",
                "mime::base64",
                "unpack(\"m",
                "unpack('m",
                "pack(\"h",
                "pack('h",
            ],
            &[
                "socket(",
                "io::socket",
                "socket;",
                "use socket",
                "msocket",
                " socket",
            ],
            &[
                "exec",
                "system",
                "open(stdin",
                "open stdin",
                "/bin/sh",
                "/bin/bash",
                "fdopen",
            ],
        ),
        Lang::Ruby => (
            &[
                "open-uri",
                "net::http",
                "uri.open",
                "open(\"http",
                "open('http",
                "uri.parse",
                "httparty",
                "faraday",
            ],
            &["eval", "instance_eval", "system", "exec", "`", "%x"],
            &[
                "base64.decode64",
                "unpack(\"m",
                "unpack('m",
                "unpack1(\"m",
                "base64.strict_decode64",
            ],
            &["tcpsocket", "socket.tcp", "udpsocket"],
            &[
                "exec",
                "spawn",
                "system",
                "io.popen",
                "/bin/sh",
                "/bin/bash",
                "to_i",
                "pty",
            ],
        ),
        Lang::Node => (
            &[
                "http.get",
                "https.get",
                "require(\"https\")",
                "require('https')",
                "require(\"http\")",
                "require('http')",
                "fetch(",
                "axios",
                "request(",
                "http.request",
                "https.request",
                "got(",
            ],
            &[
                "eval(",
                "new function",
                "function(",
                "vm.run",
                "runinthiscontext",
                "runinnewcontext",
            ],
            &[
                "buffer.from(",
                "atob(",
                "'base64'",
                "\"base64\"",
                "fromcharcode",
            ],
            &[
                "net.socket",
                "net.connect",
                "createconnection",
                "require('net')",
                "require(\"net\")",
                "dgram",
                "tls.connect",
            ],
            &[
                "child_process",
                "spawn(",
                "/bin/sh",
                "/bin/bash",
                "execsync",
            ],
        ),
        Lang::Php => (
            &[
                "file_get_contents(\"http",
                "file_get_contents('http",
                "curl_exec",
                "fopen(\"http",
                "fopen('http",
                "file_get_contents($",
            ],
            &[
                "eval(",
                "assert(",
                "create_function",
                "include",
                "require",
                "preg_replace",
            ],
            &[
                "base64_decode",
                "gzinflate",
                "str_rot13",
                "hex2bin",
                "gzuncompress",
            ],
            &[
                "fsockopen",
                "stream_socket_client",
                "socket_create",
                "pfsockopen",
            ],
            &[
                "exec(",
                "shell_exec",
                "system(",
                "passthru",
                "proc_open",
                "popen(",
                "/bin/sh",
                "`",
            ],
        ),
        Lang::PowerShell => (
            &[
                "downloadstring",
                "downloadfile",
                "downloaddata",
                "invoke-webrequest",
                "iwr ",
                "iwr(",
                "invoke-restmethod",
                "irm ",
                "irm(",
                "net.webclient",
                "start-bitstransfer",
                "webclient",
                "bitsadmin",
            ],
            &[
                "iex",
                "invoke-expression",
                "start-process",
                ".invoke(",
                "& (",
                "&(",
                "invoke-command",
                "scriptblock",
            ],
            &[
                "frombase64string",
                "[convert]::frombase64",
                "-enc",
                "encodedcommand",
            ],
            &[
                "net.sockets.tcpclient",
                "sockets.tcpclient",
                "net.sockets.socket",
            ],
            &[
                "getstream",
                "iex",
                "invoke-expression",
                "cmd.exe",
                "powershell",
            ],
        ),
        Lang::Lua => (
            &["http.request", "socket.http", "curl"],
            &["loadstring", "load(", "dostring", "os.execute", "io.popen"],
            &["base64", "mime.unb64"],
            &[
                "socket.tcp",
                "socket.connect",
                "require('socket')",
                "require(\"socket\")",
                "require\"socket\"",
            ],
            &["os.execute", "io.popen", "/bin/sh", "/bin/bash"],
        ),
    };
    let name = lang_name(lang);
    if has(fetch) && has(run) {
        out.push((
            Category::DownloadExecute,
            format!("{name} code fetches content and executes it"),
        ));
    }
    if has(decode) && has(run) {
        out.push((
            Category::EncodedPayload,
            format!("{name} code decodes a payload and executes it"),
        ));
    }
    if has(socket) && has(spawn) {
        out.push((
            Category::ReverseShell,
            format!("{name} code connects a socket and runs a shell or its descriptors"),
        ));
    }
    if let Some(what) = credential(code) {
        let sends = has(&[
            "post", "put(", "send", "urlopen", "request", "write", "fetch(", "upload", "http",
        ]);
        let foreign = urls(code).any(|h| !is_api_server(h) && credential(h).is_none());
        if sends && foreign {
            out.push((
                Category::CredentialTheft,
                format!("{name} code reads {what} and sends it to another host"),
            ));
        }
    }
    out
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Python => "python",
        Lang::Perl => "perl",
        Lang::Ruby => "ruby",
        Lang::Node => "node",
        Lang::Php => "php",
        Lang::PowerShell => "powershell",
        Lang::Lua => "lua",
    }
}

/// Hosts of the URLs written in the code.
fn urls(code: &str) -> impl Iterator<Item = &str> {
    code.match_indices("://").filter_map(move |(i, _)| {
        let start = code[..i]
            .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+')
            .map_or(0, |s| s + 1);
        let end = code[i + 3..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '`' | ','))
            .map_or(code.len(), |e| i + 3 + e);
        host_of(&code[start..end])
    })
}

/// Single- and double-quoted string literals of the code.
pub fn string_literals(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(['"', '\'']) {
        let quote = rest.as_bytes()[start] as char;
        let body = &rest[start + 1..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                end = Some(i);
                break;
            }
        }
        let Some(end) = end else { break };
        out.push(&body[..end]);
        rest = &body[end + 1..];
        if out.len() >= 64 {
            break;
        }
    }
    out
}
