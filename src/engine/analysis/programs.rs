//! What programs do with their arguments and their input: wrappers,
//! shells, interpreters, fetchers, decoders, filters, socket clients,
//! kubectl. Each returns what it writes to stdout, so pipes and
//! substitutions carry where content came from.

use base64::Engine as _;

use super::Category;
use super::inline;
use super::shell::{Analyzer, Kind, Out, Taint, Val, ansi_c};
use super::words::Lang;
use super::words::*;

/// Wrappers that run the rest of their arguments as a command, and how
/// many leading operands (after options) they consume first.
fn wrapper(p: &str) -> Option<usize> {
    Some(match p {
        "exec" | "nohup" | "setsid" | "stdbuf" | "time" | "builtin" | "unbuffer" | "sudo"
        | "doas" | "nice" | "ionice" | "env" | "catchsegv" | "strace" | "ltrace" | "torsocks"
        | "proxychains" | "proxychains4" | "firejail" | "tini" | "dumb-init" | "gosu"
        | "su-exec" | "runuser" | "su" | "chpst" | "s6-setuidgid" | "setpriv" | "script" => 0,
        "timeout" | "taskset" | "chrt" | "flock" | "chroot" | "unshare" | "cgexec" => 1,
        _ => return None,
    })
}

/// Options of wrappers that take a value in the next argument.
fn wrapper_option_takes_value(p: &str, opt: &str) -> bool {
    match p {
        "sudo" => matches!(
            opt,
            "-u" | "-g" | "-C" | "-D" | "-h" | "-p" | "-r" | "-t" | "-U" | "-T"
        ),
        "env" => matches!(opt, "-u" | "-C" | "--unset" | "--chdir"),
        "timeout" => matches!(opt, "-s" | "-k" | "--signal" | "--kill-after"),
        "nice" => matches!(opt, "-n" | "--adjustment"),
        "ionice" => matches!(opt, "-c" | "-n" | "-p" | "--class" | "--classdata"),
        "gosu" | "su-exec" | "runuser" | "su" | "chpst" | "setpriv" => {
            matches!(opt, "-u" | "-g" | "-s" | "--shell" | "--user" | "--group")
        }
        "strace" | "ltrace" => matches!(opt, "-o" | "-e" | "-p" | "-s" | "-u"),
        "flock" => matches!(opt, "-w" | "--timeout" | "-E" | "--conflict-exit-code"),
        _ => false,
    }
}

impl Analyzer<'_> {
    /// Run an argv as the kubelet execs it.
    pub fn argv(&mut self, argv: &[String]) {
        let argv: Vec<Val> = argv.iter().map(|a| Val::lit(a.clone())).collect();
        self.exec(argv, Val::default());
    }

    /// One command: what it does, and its stdout.
    pub fn exec(&mut self, mut argv: Vec<Val>, stdin: Val) -> Out {
        for w in &argv {
            if has_pool_url(&w.text) {
                self.hit(Category::Cryptominer, "a mining pool URL (stratum)");
            }
            if w.text.contains("/dev/tcp/") || w.text.contains("/dev/udp/") {
                self.hit(Category::ReverseShell, "a /dev/tcp socket");
            }
            if w.text.contains("/inet/tcp/") || w.text.contains("/inet/udp/") {
                self.hit(Category::ReverseShell, "an awk /inet socket");
            }
        }
        miner_flags(self, &argv);
        let mut guard = 0;
        loop {
            guard += 1;
            if argv.is_empty() || guard > 16 {
                return Out::default();
            }
            if argv[0].taint.is_code_risk() {
                let t = argv[0].taint;
                self.code_from(t, "the shell as a command");
            }
            let name = program(&argv[0].text);
            if let Some(skip) = wrapper(&name) {
                argv = self.unwrap(&name, argv, skip);
                continue;
            }
            match name.as_str() {
                "busybox" | "toybox" | "command" if argv.len() > 1 => {
                    if name == "command" && argv[1].text.starts_with('-') {
                        return Out::default();
                    }
                    argv.remove(0);
                    continue;
                }
                "k3s" | "microk8s" | "rke2" if argv.len() > 1 => {
                    argv.remove(0);
                    continue;
                }
                "xargs" => {
                    // The command gets stdin as arguments: `| xargs sh -c`
                    // runs what arrived.
                    let replace = argv.iter().enumerate().find_map(|(k, w)| {
                        let t = w.text.as_str();
                        if t == "-I" {
                            argv.get(k + 1).map(|v| v.text.clone())
                        } else if t == "-i" || t == "--replace" {
                            Some("{}".to_owned())
                        } else {
                            t.strip_prefix("-I")
                                .or_else(|| t.strip_prefix("--replace="))
                                .or_else(|| t.strip_prefix("-i"))
                                .map(str::to_owned)
                        }
                    });
                    let mut rest = skip_options(&argv[1..], |o| {
                        matches!(o, "-I" | "-n" | "-L" | "-P" | "-d" | "-E" | "-s" | "-a")
                    });
                    if rest.is_empty() {
                        rest.push(Val::lit("echo"));
                    }
                    let data = Val {
                        known: stdin.known && !stdin.text.is_empty(),
                        ..stdin.clone()
                    };
                    match replace.filter(|r| !r.is_empty()) {
                        // `-I{}`: each line replaces `{}` in the arguments.
                        Some(r) => {
                            for v in rest.iter_mut().skip(1) {
                                if v.text.contains(&r) {
                                    v.taint = v.taint.union(data.taint);
                                    v.known &= data.known;
                                    if data.known {
                                        v.text = v.text.replace(&r, data.text.trim_end());
                                    }
                                }
                            }
                        }
                        None => rest.push(data),
                    }
                    argv = rest;
                    continue;
                }
                "watch" => {
                    let rest =
                        skip_options(&argv[1..], |o| matches!(o, "-n" | "-d" | "--interval"));
                    let mut script = Val::lit("");
                    for (i, v) in rest.iter().enumerate() {
                        if i > 0 {
                            script.append(&Val::lit(" "));
                        }
                        script.append(v);
                    }
                    argv = vec![Val::lit("sh"), Val::lit("-c"), script];
                    continue;
                }
                "nsenter" => {
                    self.nsenter(&argv);
                    let rest = skip_options(&argv[1..], |o| {
                        matches!(
                            o,
                            "-t" | "--target" | "-S" | "-G" | "--setuid" | "--setgid" | "-w" | "-r"
                        )
                    });
                    argv = rest;
                    if argv.is_empty() {
                        return Out::default();
                    }
                    continue;
                }
                _ => {}
            }
            return self.program(&name, argv, stdin);
        }
    }

    /// Drop a wrapper and its options and leading operands.
    fn unwrap(&mut self, name: &str, argv: Vec<Val>, skip: usize) -> Vec<Val> {
        let mut i = 1;
        while i < argv.len() {
            let a = &argv[i].text;
            if a == "--" {
                i += 1;
                break;
            }
            if name == "env" && a.contains('=') && !a.starts_with('-') {
                i += 1;
                continue;
            }
            if (name == "env" && (a == "-S" || a == "--split-string"))
                || ((name == "su" || name == "runuser") && (a == "-c" || a == "--command"))
            {
                // `env -S 'sh -c …'` splits its string into words; `su -c`
                // runs a shell script.
                let Some(s) = argv.get(i + 1).cloned() else {
                    return Vec::new();
                };
                if name == "env" {
                    return s
                        .text
                        .split_whitespace()
                        .map(|w| Val {
                            text: w.to_owned(),
                            taint: s.taint,
                            known: s.known,
                        })
                        .collect();
                }
                return vec![Val::lit("sh"), Val::lit("-c"), s];
            }
            if !a.starts_with('-') || a == "-" {
                break;
            }
            if wrapper_option_takes_value(name, a) {
                i += 1;
            }
            i += 1;
        }
        if name == "chroot" {
            if let Some(dir) = argv.get(i) {
                self.chroot(&dir.text);
            }
            if argv.len() <= i + 1 {
                // `chroot /host` alone starts the host's shell.
                return vec![Val::lit("sh")];
            }
        }
        argv.into_iter().skip(i + skip).collect()
    }

    fn nsenter(&mut self, argv: &[Val]) {
        let mut target_one = false;
        for (i, a) in argv.iter().enumerate() {
            let t = a.text.as_str();
            let value = if t == "-t" || t == "--target" {
                argv.get(i + 1).map(|v| v.text.as_str())
            } else {
                t.strip_prefix("--target=")
                    .or_else(|| t.strip_prefix("-t").filter(|v| !v.is_empty()))
            };
            if value == Some("1") {
                target_one = true;
            }
        }
        if target_one {
            self.hit(
                Category::ClusterTakeover,
                "nsenter into PID 1's namespaces (the node)",
            );
        }
    }

    fn chroot(&mut self, dir: &str) {
        let dir = clean(dir);
        if self
            .host_mounts
            .iter()
            .any(|m| dir == clean(m) || dir.starts_with(&format!("{}/", clean(m))))
        {
            self.hit(
                Category::ClusterTakeover,
                format!("chroot into the hostPath mount {dir}"),
            );
        }
    }

    /// The program table.
    fn program(&mut self, name: &str, argv: Vec<Val>, stdin: Val) -> Out {
        if let Some(m) = miner_name(name) {
            self.hit(Category::Cryptominer, format!("runs the miner {m}"));
        }
        if is_shell(name) {
            return self.shell(name, &argv, stdin);
        }
        if let Some(lang) = interpreter(name) {
            return self.interpreter(name, lang, &argv, stdin);
        }
        match name {
            "eval" => {
                let mut script = Val::lit("");
                for (i, v) in argv[1..].iter().enumerate() {
                    if i > 0 {
                        script.append(&Val::lit(" "));
                    }
                    script.append(v);
                }
                self.code_from(script.taint, "eval");
                let out = self.script(&script.text, &stdin);
                return Out {
                    stdout: out,
                    kind: Kind::Other,
                };
            }
            "source" | "." => {
                let Some(file) = argv.get(1) else {
                    return Out::default();
                };
                return self.run_file(file, &stdin, name);
            }
            _ => {}
        }
        if is_fetcher(name) {
            return self.fetcher(name, &argv, stdin);
        }
        if is_net_client(name) {
            return self.net_client(name, &argv, stdin);
        }
        if let Some(out) = self.decoder(name, &argv, &stdin) {
            return out;
        }
        match name {
            "echo" | "printf" => return self.echo(name, &argv),
            "cat" | "tac" | "head" | "tail" | "sed" | "awk" | "gawk" | "grep" | "cut" | "sort"
            | "uniq" | "tee" | "dd" | "gunzip" | "zcat" | "bzcat" | "xzcat" | "zstdcat"
            | "bunzip2" | "unxz" | "strings" | "fold" | "iconv" | "sponge" | "jq" | "yq"
            | "more" | "less" | "column" | "gzip" | "xz" | "zstd" | "tr" => {
                return self.filter(name, &argv, stdin);
            }
            "chmod" => self.chmod(&argv),
            "cp" | "mv" | "install" | "ln" => self.copy(&argv),
            "tar" | "unzip" | "bsdtar" | "7z" | "7za" | "cpio" | "unrar" => {
                let from_download = stdin.taint.net
                    || argv[1..]
                        .iter()
                        .any(|a| a.taint.net || self.file_taint(&a.text).is_some_and(|t| t.net));
                if from_download {
                    self.extracted = true;
                }
            }
            "kubectl" | "oc" => return self.kubectl(&argv, &stdin),
            "scp" | "sftp" | "rsync" | "aws" | "gsutil" | "gcloud" | "az" | "rclone" | "s3cmd"
            | "mc" | "ssh" | "sendmail" | "mail" | "mailx" | "mutt" => {
                self.upload(name, &argv, &stdin);
            }
            "openssl" => return self.openssl(&argv, stdin),
            _ => {}
        }
        // Running a file by path: one the script downloaded or decoded.
        let path = argv[0].text.as_str();
        if let Some(t) = self.file_taint(path) {
            self.code_from(t, &format!("the downloaded file {path}"));
        } else if self.extracted && is_scratch_path(path) {
            self.hit(
                Category::DownloadExecute,
                format!("{path} runs from a downloaded archive"),
            );
        } else if let Some(content) = self.files.get(path).cloned()
            && content.known
        {
            self.script(&content.text, &stdin);
        }
        Out::default()
    }

    fn shell(&mut self, name: &str, argv: &[Val], stdin: Val) -> Out {
        let mut script_mode = false;
        let mut stdin_mode = false;
        let mut operand: Option<&Val> = None;
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].text.as_str();
            if a == "--" {
                operand = argv.get(i + 1);
                break;
            }
            if a == "-" {
                stdin_mode = true;
                break;
            }
            if let Some(flags) = a.strip_prefix('-').or_else(|| a.strip_prefix('+')) {
                if flags.starts_with('-') {
                    if matches!(a, "--rcfile" | "--init-file") {
                        i += 1;
                    }
                } else {
                    if flags.contains('c') && a.starts_with('-') {
                        script_mode = true;
                    }
                    if flags.contains('s') {
                        stdin_mode = true;
                    }
                    if flags.contains('o') || flags.contains('O') {
                        i += 1;
                    }
                }
                i += 1;
                continue;
            }
            operand = Some(&argv[i]);
            break;
        }
        let runner = name.to_owned();
        if script_mode {
            let Some(script) = operand else {
                return Out::default();
            };
            self.code_from(script.taint, &runner);
            let out = self.script(&script.text.clone(), &stdin);
            return Out {
                stdout: out,
                kind: Kind::Other,
            };
        }
        match operand {
            Some(file) if !stdin_mode && file.text != "/dev/stdin" => {
                let file = file.clone();
                self.run_file(&file, &stdin, &runner)
            }
            _ => {
                self.code_from(stdin.taint, &runner);
                let out = if stdin.known && !stdin.text.is_empty() {
                    self.script(&stdin.text, &Val::default())
                } else {
                    Val::default()
                };
                Out {
                    stdout: out,
                    kind: Kind::ShellOnStdin,
                }
            }
        }
    }

    /// `sh FILE`, `source FILE`, `python FILE`: a file the script made.
    fn run_file(&mut self, file: &Val, stdin: &Val, runner: &str) -> Out {
        if file.text == "/dev/stdin" || file.text == "-" {
            self.code_from(stdin.taint, runner);
            if stdin.known {
                self.script(&stdin.text, &Val::default());
            }
            return Out {
                stdout: Val::default(),
                kind: Kind::ShellOnStdin,
            };
        }
        let mut t = file.taint;
        if let Some(ft) = self.file_taint(&file.text) {
            t = t.union(ft);
        }
        if self.extracted && is_scratch_path(&file.text) {
            t.net = true;
        }
        self.code_from(t, runner);
        if let Some(content) = self.files.get(&file.text).cloned()
            && content.known
            && !t.is_code_risk()
        {
            let out = self.script(&content.text, stdin);
            return Out {
                stdout: out,
                kind: Kind::Other,
            };
        }
        Out::default()
    }

    fn interpreter(&mut self, name: &str, lang: Lang, argv: &[Val], stdin: Val) -> Out {
        let mut code: Option<Val> = None;
        let mut modules = String::new();
        let mut file: Option<&Val> = None;
        let mut stdin_mode = false;
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].text.as_str();
            let next = argv.get(i + 1);
            match inline::flag(lang, a) {
                inline::Flag::Code(attached) => {
                    let v = match attached {
                        Some(s) => Val {
                            text: s.to_owned(),
                            ..argv[i].clone()
                        },
                        None => {
                            i += 1;
                            next.cloned().unwrap_or_default()
                        }
                    };
                    let mut all = code.take().unwrap_or_else(|| Val::lit(""));
                    all.append(&Val::lit("\n"));
                    all.append(&v);
                    if lang == Lang::PowerShell {
                        // The rest of the line is the command too.
                        for rest in &argv[i + 1..] {
                            all.append(&Val::lit(" "));
                            all.append(rest);
                        }
                        i = argv.len();
                    }
                    code = Some(all);
                }
                inline::Flag::Encoded => {
                    self.hit(
                        Category::EncodedPayload,
                        format!("{name} runs a base64-encoded command"),
                    );
                    // Decode it and read on: UTF-16LE base64.
                    if let Some(v) = next
                        && let Some(text) = decode_utf16_b64(&v.text)
                    {
                        code = Some(Val::lit(text));
                    }
                    i += 1;
                }
                inline::Flag::Module(attached) => {
                    let m = match attached {
                        Some(s) => s.to_owned(),
                        None => {
                            i += 1;
                            next.map(|v| v.text.clone()).unwrap_or_default()
                        }
                    };
                    modules.push_str(&m);
                    modules.push(' ');
                }
                inline::Flag::Value => i += 1,
                inline::Flag::Stdin => stdin_mode = true,
                inline::Flag::Other => {}
                inline::Flag::Operand => {
                    if lang == Lang::PowerShell && code.is_none() {
                        // `powershell "IEX …"`: the words are the command.
                        let mut all = Val::lit("");
                        for rest in &argv[i..] {
                            all.append(&Val::lit(" "));
                            all.append(rest);
                        }
                        code = Some(all);
                    } else {
                        file = Some(&argv[i]);
                    }
                    break;
                }
            }
            i += 1;
        }
        if let Some(code) = code {
            self.code_from(code.taint, name);
            self.inline(lang, &format!("{modules}\n{}", code.text));
            return Out::default();
        }
        if let Some(f) = file
            && !stdin_mode
        {
            let f = f.clone();
            return self.run_file(&f, &stdin, name);
        }
        self.code_from(stdin.taint, name);
        if stdin.known && !stdin.text.is_empty() {
            self.inline(lang, &format!("{modules}\n{}", stdin.text));
        }
        Out {
            stdout: Val::default(),
            kind: Kind::ShellOnStdin,
        }
    }

    /// Inline code: the language's own patterns, and the shell commands
    /// its string literals hold (`os.system("curl … | sh")`).
    fn inline(&mut self, lang: Lang, code: &str) {
        for (category, detail) in inline::analyze(lang, code) {
            self.hit(category, detail);
        }
        for literal in inline::string_literals(code) {
            if literal.contains(' ') {
                self.script(literal, &Val::default());
            }
        }
    }

    fn fetcher(&mut self, name: &str, argv: &[Val], stdin: Val) -> Out {
        let spec = fetcher_spec(name);
        let mut urls: Vec<Val> = Vec::new();
        let mut f = Fetch::new(&spec);
        let mut mentions_binding = false;
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].text.as_str();
            let value = |j: usize| argv.get(j).cloned().unwrap_or_default();
            if let Some((opt, v)) = a.split_once('=').filter(|(o, _)| o.starts_with("--")) {
                f.option(
                    &spec,
                    opt,
                    &Val {
                        text: v.to_owned(),
                        ..argv[i].clone()
                    },
                );
                if opt == "--url" {
                    urls.push(Val::lit(v));
                }
                mentions_binding |= v.contains("cluster-admin");
                i += 1;
                continue;
            }
            if a.starts_with("--") {
                if spec.long_with_value.contains(&a) {
                    let v = value(i + 1);
                    mentions_binding |= v.text.contains("cluster-admin");
                    if a == "--url" {
                        urls.push(v.clone());
                    }
                    f.option(&spec, a, &v);
                    i += 2;
                } else {
                    if matches!(a, "--remote-name" | "--remote-name-all") {
                        f.remote_name = true;
                        f.to_stdout = false;
                    }
                    i += 1;
                }
                continue;
            }
            if a.len() > 1 && a.starts_with('-') {
                // A cluster of short options: `-fsSLo out`, `-qO-`.
                let flags: Vec<char> = a[1..].chars().collect();
                let mut consumed_next = false;
                for (k, c) in flags.iter().enumerate() {
                    if spec.short_with_value.contains(*c) {
                        let attached: String = flags[k + 1..].iter().collect();
                        let v = if attached.is_empty() {
                            consumed_next = true;
                            value(i + 1)
                        } else {
                            Val {
                                text: attached,
                                ..argv[i].clone()
                            }
                        };
                        mentions_binding |= v.text.contains("cluster-admin");
                        let opt = format!("-{c}");
                        f.option(&spec, &opt, &v);
                        break;
                    }
                    if *c == 'O' && spec.name == "curl" {
                        f.remote_name = true;
                        f.to_stdout = false;
                    }
                }
                i += if consumed_next { 2 } else { 1 };
                continue;
            }
            urls.push(argv[i].clone());
            if spec.name == "lwp-download" && urls.len() == 2 {
                f.output = Some(a.to_owned());
                urls.pop();
            }
            i += 1;
        }
        // The data it sends.
        f.data = f.data.union(stdin_if_sent(&f.data_files, &stdin));
        for file in &f.data_files {
            if let Some(what) = credential(file) {
                f.data.cred = Some(what);
            }
            if let Some(t) = self.files.get(file.as_str()).map(|v| v.taint) {
                f.data = f.data.union(t);
            }
        }
        for v in argv[1..].iter() {
            if v.taint.cred.is_some() {
                f.data.cred = f.data.cred.or(v.taint.cred);
            }
        }
        let hosts: Vec<&str> = urls.iter().filter_map(|u| host_of(&u.text)).collect();
        self.credential_sink(name, f.data, &hosts);
        if mentions_binding && urls.iter().any(|u| u.text.contains("rolebindings")) {
            self.hit(
                Category::ClusterTakeover,
                "binds cluster-admin through the API",
            );
        }
        // What it fetched.
        let mut got = Taint {
            net: true,
            ..Taint::default()
        };
        for u in &urls {
            if let Some(what) = credential(&u.text) {
                got.cred = Some(what);
            }
            if let Some(m) = miner_name(u.text.rsplit('/').next().unwrap_or("")) {
                self.hit(Category::Cryptominer, format!("downloads the miner {m}"));
            }
        }
        let fetched = Val::opaque(got);
        if f.output.as_deref() == Some("-") {
            f.to_stdout = true;
            f.output = None;
        }
        if let Some(path) = f.output {
            self.write_file(&path, fetched.clone());
            f.to_stdout = false;
        } else if f.remote_name {
            for u in &urls {
                let base = u
                    .text
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let base = if base.is_empty() {
                    "index.html".to_owned()
                } else {
                    base
                };
                let path = match &f.dir {
                    Some(d) => format!("{}/{base}", d.trim_end_matches('/')),
                    None => base,
                };
                self.write_file(&path, fetched.clone());
            }
        }
        Out {
            stdout: if f.to_stdout { fetched } else { Val::default() },
            kind: Kind::Other,
        }
    }

    /// A credential sent anywhere but the API server (SPEC 3.3 category 5).
    fn credential_sink(&mut self, sender: &str, data: Taint, hosts: &[&str]) {
        let Some(what) = data.cred else { return };
        if !hosts.is_empty() && hosts.iter().all(|h| is_api_server(h)) {
            return;
        }
        let to = hosts
            .iter()
            .find(|h| !is_api_server(h))
            .map_or("a host other than the API server".to_owned(), |h| {
                (*h).to_owned()
            });
        self.hit(
            Category::CredentialTheft,
            format!("{what} sent to {to} by {sender}"),
        );
    }

    fn net_client(&mut self, name: &str, argv: &[Val], stdin: Val) -> Out {
        let mut hosts: Vec<&str> = Vec::new();
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].text.as_str();
            let lower = a.to_ascii_lowercase();
            if name == "socat" {
                if lower.starts_with("exec:") || lower.starts_with("system:") {
                    self.hit(
                        Category::ReverseShell,
                        format!("socat connects a socket to {a}"),
                    );
                }
                if let Some(rest) = lower
                    .strip_prefix("tcp:")
                    .or_else(|| lower.strip_prefix("tcp4:"))
                    .or_else(|| lower.strip_prefix("tcp-connect:"))
                    .or_else(|| lower.strip_prefix("openssl:"))
                    .or_else(|| lower.strip_prefix("ssl:"))
                    .or_else(|| lower.strip_prefix("udp:"))
                {
                    hosts.push(&a[a.len() - rest.len()..]);
                }
            } else if let Some(flags) = a.strip_prefix("--") {
                if matches!(
                    flags.split('=').next(),
                    Some("exec" | "sh-exec" | "lua-exec")
                ) {
                    self.hit(
                        Category::ReverseShell,
                        format!("{name} {a} gives a socket a program"),
                    );
                }
            } else if let Some(flags) = a.strip_prefix('-') {
                if flags.contains('e') || flags.contains('c') {
                    self.hit(
                        Category::ReverseShell,
                        format!("{name} -{flags} gives a socket a program"),
                    );
                }
                if flags.ends_with([
                    'p', 's', 'w', 'q', 'i', 'x', 'X', 'e', 'c', 'I', 'O', 'T', 'W',
                ]) {
                    i += 1;
                }
            } else if !a.chars().all(|c| c.is_ascii_digit()) {
                hosts.push(a);
            }
            i += 1;
        }
        self.credential_sink(name, stdin.taint, &hosts);
        Out::net_client()
    }

    fn openssl(&mut self, argv: &[Val], stdin: Val) -> Out {
        let sub = argv.get(1).map(|v| v.text.as_str()).unwrap_or("");
        let decoding = argv
            .iter()
            .any(|a| a.text == "-d" || a.text == "-base64" && sub == "base64")
            && matches!(
                sub,
                "enc" | "base64" | "aes-256-cbc" | "des3" | "aes-128-cbc"
            )
            || sub.starts_with('-') && argv.iter().any(|a| a.text == "-d");
        if sub == "s_client" {
            let hosts: Vec<&str> = argv
                .windows(2)
                .filter(|w| w[0].text == "-connect")
                .map(|w| host_of(&w[1].text).unwrap_or(""))
                .collect();
            self.credential_sink("openssl s_client", stdin.taint, &hosts);
            return Out::net_client();
        }
        if decoding {
            let mut t = stdin.taint;
            t.decoded = true;
            return Out {
                stdout: Val::opaque(t),
                kind: Kind::Other,
            };
        }
        Out::default()
    }

    /// base64/base32/xxd/basenc/uudecode/rev and escape-decoding `printf`:
    /// their output is a decoded payload.
    fn decoder(&mut self, name: &str, argv: &[Val], stdin: &Val) -> Option<Out> {
        let has = |flags: &[&str]| {
            argv[1..].iter().any(|a| {
                flags.contains(&a.text.as_str())
                    || (a.text.starts_with('-')
                        && !a.text.starts_with("--")
                        && flags
                            .iter()
                            .any(|f| f.len() == 2 && a.text[1..].contains(&f[1..])))
            })
        };
        let decoding = match name {
            "base64" | "base32" | "basenc" | "base64url" => has(&["-d", "--decode", "-D"]),
            "xxd" => has(&["-r", "--reverse"]),
            "uudecode" | "rev" => true,
            _ => false,
        };
        if !decoding {
            return None;
        }
        let mut input = stdin.clone();
        for a in &argv[1..] {
            if !a.text.starts_with('-') {
                input = self.read_file(a);
            }
        }
        let mut out = Val::opaque(input.taint);
        out.taint.decoded = true;
        if input.known {
            let decoded = match name {
                "base64" | "basenc" | "base64url" => decode_b64(&input.text),
                "rev" => Some(
                    input
                        .text
                        .lines()
                        .map(|l| l.chars().rev().collect::<String>())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                "xxd" => decode_hex(&input.text),
                _ => None,
            };
            if let Some(text) = decoded {
                out.text = text;
                out.known = true;
            }
        }
        Some(Out {
            stdout: out,
            kind: Kind::Other,
        })
    }

    fn echo(&mut self, name: &str, argv: &[Val]) -> Out {
        let mut out = Val::lit("");
        let mut escapes = name == "printf";
        let mut first = true;
        for a in &argv[1..] {
            if first && name == "echo" && a.text.starts_with('-') && a.text.len() <= 4 {
                escapes |= a.text.contains('e');
                continue;
            }
            if !first {
                out.append(&Val::lit(" "));
            }
            first = false;
            out.append(a);
        }
        if escapes
            && (out.text.contains("\\x") || out.text.contains("\\0") || out.text.contains("\\u"))
        {
            // `printf '\x63\x75\x72\x6c …' | sh` hides the command.
            out.text = ansi_c(&out.text);
            out.taint.decoded = true;
        }
        if name == "echo" {
            out.text.push('\n');
        }
        Out {
            stdout: out,
            kind: Kind::Other,
        }
    }

    fn filter(&mut self, name: &str, argv: &[Val], stdin: Val) -> Out {
        let mut out = Val::opaque(Taint::default());
        let mut read_stdin = true;
        let mut known_files = Vec::new();
        let mut writes = Vec::new();
        let mut skip_next = false;
        for (k, a) in argv[1..].iter().enumerate() {
            if skip_next {
                skip_next = false;
                continue;
            }
            let t = a.text.as_str();
            if t.starts_with('-') && t != "-" {
                // Options with a value: `-n 1`, `-e expr`, `-f file`, `-d ,`.
                if matches!(
                    t,
                    "-n" | "-c"
                        | "-e"
                        | "-d"
                        | "-f"
                        | "-F"
                        | "-v"
                        | "-s"
                        | "-t"
                        | "-k"
                        | "-m"
                        | "-A"
                        | "-B"
                        | "-C"
                        | "-i"
                ) && !matches!(name, "tee" | "sort" | "uniq")
                {
                    skip_next = k + 2 < argv.len()
                        && !matches!(name, "cat" | "gzip" | "gunzip" | "zcat" | "xz" | "zstd");
                }
                continue;
            }
            out.taint = out.taint.union(a.taint);
            match name {
                "tee" => writes.push(t.to_owned()),
                "sed" | "awk" | "gawk" | "grep" | "jq" | "yq" | "tr" if k == 0 => {}
                "dd" => {
                    if let Some(f) = t.strip_prefix("if=") {
                        read_stdin = false;
                        let v = self.read_file(&Val::lit(f));
                        out.taint = out.taint.union(v.taint);
                    } else if let Some(f) = t.strip_prefix("of=") {
                        writes.push(f.to_owned());
                    }
                }
                _ => {
                    if t != "-" {
                        read_stdin = false;
                    }
                    let v = self.read_file(a);
                    if v.known {
                        known_files.push(v.text.clone());
                    }
                    out.taint = out.taint.union(v.taint);
                }
            }
        }
        if read_stdin {
            out.taint = out.taint.union(stdin.taint);
            if name == "cat" || name == "tee" {
                out.text = stdin.text.clone();
                out.known = stdin.known;
            }
        } else if name == "cat" && !known_files.is_empty() {
            out.text = known_files.concat();
            out.known = true;
        }
        for w in writes {
            self.write_file(&w, out.clone());
        }
        if matches!(name, "gzip" | "xz" | "zstd")
            && !argv
                .iter()
                .any(|a| a.text == "-d" || a.text == "-dc" || a.text == "-cd")
        {
            // Compressing: the content is no longer readable code.
            out.known = false;
            out.text.clear();
        }
        Out {
            stdout: out,
            kind: Kind::Other,
        }
    }

    fn chmod(&mut self, argv: &[Val]) {
        let operands: Vec<&Val> = argv[1..]
            .iter()
            .filter(|a| !a.text.starts_with('-') || a.text.starts_with("-x"))
            .collect();
        let Some((mode, files)) = operands.split_first() else {
            return;
        };
        if !grants_exec(&mode.text) {
            return;
        }
        for f in files {
            if let Some(t) = self.file_taint(&f.text) {
                if t.net {
                    self.hit(
                        Category::DownloadExecute,
                        format!("the downloaded file {} is made executable", f.text),
                    );
                }
                if t.decoded {
                    self.hit(
                        Category::EncodedPayload,
                        format!("the decoded file {} is made executable", f.text),
                    );
                }
            } else if self.extracted && is_scratch_path(&f.text) {
                self.hit(
                    Category::DownloadExecute,
                    format!("{} from a downloaded archive is made executable", f.text),
                );
            }
            if let Some(m) = miner_name(&f.text) {
                self.hit(
                    Category::Cryptominer,
                    format!("makes the miner {m} executable"),
                );
            }
        }
    }

    fn copy(&mut self, argv: &[Val]) {
        let operands: Vec<&Val> = argv[1..]
            .iter()
            .filter(|a| !a.text.starts_with('-'))
            .collect();
        if let [sources @ .., dest] = operands.as_slice() {
            for s in sources {
                let content = self.read_file(s);
                let name = s.text.rsplit('/').next().unwrap_or("");
                self.write_file(&dest.text, content.clone());
                self.write_file(
                    &format!("{}/{name}", dest.text.trim_end_matches('/')),
                    content,
                );
            }
        }
    }

    fn kubectl(&mut self, argv: &[Val], stdin: &Val) -> Out {
        let words: Vec<&str> = argv[1..].iter().map(|a| a.text.as_str()).collect();
        let positional: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect();
        let verb = positional.first().copied().unwrap_or("");
        let resource = positional.get(1).copied().unwrap_or("");
        let flag = |name: &str| -> Option<&str> {
            words.iter().enumerate().find_map(|(i, w)| {
                w.strip_prefix(&format!("{name}="))
                    .or_else(|| (*w == name).then(|| words.get(i + 1).copied().unwrap_or("")))
            })
        };
        if verb == "create"
            && matches!(resource, "clusterrolebinding" | "rolebinding")
            && flag("--clusterrole") == Some("cluster-admin")
        {
            self.hit(
                Category::ClusterTakeover,
                format!("kubectl create {resource} to cluster-admin"),
            );
        }
        if matches!(verb, "apply" | "create" | "replace") {
            let file = flag("-f").or_else(|| flag("--filename")).unwrap_or("");
            let manifest = if file == "-" || file == "/dev/stdin" {
                Some(stdin.text.clone())
            } else {
                self.files
                    .get(file)
                    .filter(|v| v.known)
                    .map(|v| v.text.clone())
            };
            if let Some(m) = manifest {
                let lower = m.to_ascii_lowercase();
                if lower.contains("rolebinding") && lower.contains("cluster-admin") {
                    self.hit(
                        Category::ClusterTakeover,
                        "a manifest binding cluster-admin is applied",
                    );
                }
            }
        }
        let server = flag("--server").or_else(|| flag("-s"));
        let mut data = Taint::default();
        for a in &argv[1..] {
            data = data.union(a.taint);
        }
        if let Some(server) = server
            && let Some(host) = host_of(server)
        {
            self.credential_sink("kubectl", data, &[host]);
        }
        let mut out = Val::opaque(Taint::default());
        let reads_secrets = verb == "get"
            && positional[1..].iter().any(|r| {
                r.split(',')
                    .any(|r| matches!(r.split('/').next(), Some("secret" | "secrets")))
            });
        if reads_secrets {
            out.taint.cred = Some("Secret contents");
        }
        if verb == "create" && resource == "token" {
            out.taint.cred = Some("a service-account token");
        }
        if verb == "config" && resource == "view" && words.contains(&"--raw") {
            out.taint.cred = Some("a kubeconfig");
        }
        Out {
            stdout: out,
            kind: Kind::Other,
        }
    }

    /// Cloud CLIs, scp, ssh, mail: a credential among what they carry.
    fn upload(&mut self, name: &str, argv: &[Val], stdin: &Val) {
        let mut data = Taint::default();
        for a in &argv[1..] {
            data = data.union(a.taint);
            if let Some(what) = credential(&a.text) {
                data.cred = Some(what);
            }
            if a.text == "-" {
                data = data.union(stdin.taint);
            }
        }
        if matches!(name, "ssh" | "sendmail" | "mail" | "mailx" | "mutt") {
            data = data.union(stdin.taint);
        }
        self.credential_sink(name, data, &[]);
    }
}

/// What a fetcher's options say so far: where the download goes and what
/// the request carries.
struct Fetch {
    output: Option<String>,
    to_stdout: bool,
    remote_name: bool,
    dir: Option<String>,
    data: Taint,
    data_files: Vec<String>,
}

impl Fetch {
    fn new(spec: &FetcherSpec) -> Fetch {
        Fetch {
            output: None,
            to_stdout: spec.stdout_by_default,
            remote_name: !spec.stdout_by_default,
            dir: None,
            data: Taint::default(),
            data_files: Vec::new(),
        }
    }

    /// One option with its value.
    fn option(&mut self, spec: &FetcherSpec, opt: &str, v: &Val) {
        if spec.output.contains(&opt) {
            self.output = Some(v.text.clone());
            self.to_stdout = v.text == "-";
            self.remote_name = false;
        } else if spec.dir.contains(&opt) {
            self.dir = Some(v.text.clone());
        } else if spec.data.contains(&opt) {
            self.data = self.data.union(v.taint);
            // `-d @file`, `-F name=@file`, `--post-file=file`, `-T file`.
            let text = v.text.as_str();
            let file = if let Some(f) = text.strip_prefix('@') {
                Some(f)
            } else if let Some((_, f)) = text.split_once("=@").or_else(|| text.split_once("=<")) {
                Some(f.split(';').next().unwrap_or(f))
            } else if spec.file_data.contains(&opt) {
                Some(text)
            } else {
                None
            };
            if let Some(f) = file {
                self.data_files.push(f.to_owned());
            }
            if let Some(what) = credential(text) {
                self.data.cred = Some(what);
            }
        } else if opt == "-H" || opt == "--header" {
            self.data = self.data.union(v.taint);
        }
    }
}

/// How a fetcher takes its options.
struct FetcherSpec {
    name: &'static str,
    stdout_by_default: bool,
    short_with_value: &'static str,
    long_with_value: &'static [&'static str],
    output: &'static [&'static str],
    dir: &'static [&'static str],
    data: &'static [&'static str],
    /// Data options whose value is a file path.
    file_data: &'static [&'static str],
}

fn fetcher_spec(name: &str) -> FetcherSpec {
    match name {
        "wget" | "wget2" => FetcherSpec {
            name: "wget",
            stdout_by_default: false,
            short_with_value: "OoPaiUeTtwQBDl",
            long_with_value: &[
                "--output-document",
                "--directory-prefix",
                "--post-data",
                "--post-file",
                "--body-data",
                "--body-file",
                "--header",
                "--user-agent",
                "--method",
                "--user",
                "--password",
                "--input-file",
                "--output-file",
                "--tries",
                "--timeout",
            ],
            output: &["-O", "--output-document"],
            dir: &["-P", "--directory-prefix"],
            data: &[
                "--post-data",
                "--post-file",
                "--body-data",
                "--body-file",
                "--header",
            ],
            file_data: &["--post-file", "--body-file"],
        },
        "aria2c" | "axel" | "fetch" | "tftp" | "ftp" | "lftp" => FetcherSpec {
            name: "aria2c",
            stdout_by_default: false,
            short_with_value: "odsxj",
            long_with_value: &["--out", "--dir"],
            output: &["-o", "--out"],
            dir: &["-d", "--dir"],
            data: &[],
            file_data: &[],
        },
        "lwp-download" => FetcherSpec {
            name: "lwp-download",
            stdout_by_default: false,
            short_with_value: "",
            long_with_value: &[],
            output: &[],
            dir: &[],
            data: &[],
            file_data: &[],
        },
        "http" | "https" | "xh" => FetcherSpec {
            name: "http",
            stdout_by_default: true,
            short_with_value: "oa",
            long_with_value: &["--output", "--auth"],
            output: &["-o", "--output"],
            dir: &[],
            data: &[],
            file_data: &[],
        },
        _ => FetcherSpec {
            name: "curl",
            stdout_by_default: true,
            short_with_value: "odFHuXAeTxbcwKEmrYyzCUtPQ",
            long_with_value: &[
                "--output",
                "--data",
                "--data-binary",
                "--data-raw",
                "--data-ascii",
                "--data-urlencode",
                "--form",
                "--form-string",
                "--header",
                "--user",
                "--request",
                "--user-agent",
                "--upload-file",
                "--json",
                "--url",
                "--cacert",
                "--cert",
                "--key",
                "--proxy",
                "--referer",
                "--connect-timeout",
                "--max-time",
                "--retry",
                "--resolve",
                "--connect-to",
                "--output-dir",
                "--oauth2-bearer",
                "--config",
                "--write-out",
                "--cookie",
                "--cookie-jar",
            ],
            output: &["-o", "--output"],
            dir: &["--output-dir"],
            data: &[
                "-d",
                "--data",
                "--data-binary",
                "--data-raw",
                "--data-ascii",
                "--data-urlencode",
                "-F",
                "--form",
                "--form-string",
                "-T",
                "--upload-file",
                "--json",
                "-u",
                "--user",
                "--oauth2-bearer",
            ],
            file_data: &["-T", "--upload-file"],
        },
    }
}

/// stdin is sent when a data option reads `-` / `@-`.
fn stdin_if_sent(files: &[String], stdin: &Val) -> Taint {
    if files.iter().any(|f| f == "-" || f == "/dev/stdin") {
        stdin.taint
    } else {
        Taint::default()
    }
}

/// Skip leading options (and the values of those that take one).
fn skip_options(args: &[Val], takes_value: impl Fn(&str) -> bool) -> Vec<Val> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].text.as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        if takes_value(a) {
            i += 1;
        }
        i += 1;
    }
    args[i.min(args.len())..].to_vec()
}

/// Miner flags on any command (SPEC 3.3 category 4).
fn miner_flags(a: &mut Analyzer, argv: &[Val]) {
    let name = argv.first().map(|v| program(&v.text)).unwrap_or_default();
    let mut pool = false;
    let mut user = false;
    for (i, v) in argv.iter().enumerate() {
        let t = v.text.as_str();
        let next = argv.get(i + 1).map(|v| v.text.as_str()).unwrap_or("");
        if t == "--donate-level"
            || t.starts_with("--donate-level=")
            || t == "--coin"
            || t.starts_with("--coin=")
        {
            a.hit(
                Category::Cryptominer,
                format!("miner option {}", t.split('=').next().unwrap_or(t)),
            );
        }
        if (t == "-a" || t == "--algo") && is_mining_algo(next)
            || t.strip_prefix("--algo=").is_some_and(is_mining_algo)
        {
            a.hit(Category::Cryptominer, "a mining algorithm option");
        }
        if (t == "-o" || t == "--url") && is_pool_address(next)
            || t.strip_prefix("--url=").is_some_and(is_pool_address)
        {
            pool = true;
        }
        if t == "-u" || t == "--user" || t.starts_with("--user=") {
            user = true;
        }
    }
    if pool && user && !is_fetcher(&name) && !is_sender(&name) && name != "kubectl" {
        a.hit(
            Category::Cryptominer,
            "miner options -o pool:port -u wallet",
        );
    }
}

/// `pool.example:3333`, `stratum+tcp://…`: a host and a port, no path.
fn is_pool_address(v: &str) -> bool {
    if has_pool_url(v) {
        return true;
    }
    let v = v.split("://").last().unwrap_or(v);
    match v.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains('/')
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn clean(p: &str) -> String {
    crate::engine::rules::template::clean_path(p)
}

fn decode_b64(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(compact.trim_end_matches('=').as_bytes())
        })
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn decode_hex(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// PowerShell's `-EncodedCommand`: base64 of UTF-16LE.
fn decode_utf16_b64(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .ok()?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}
