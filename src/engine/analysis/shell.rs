//! An abstract interpreter over shell scripts: it walks the brush-parser
//! AST and tracks, for every value, where it came from (the network, a
//! decoder, a credential) and, where it is literal, its text. Programs
//! themselves are modelled in [`super::programs`].

use std::io::Cursor;

use brush_parser::ast::{
    self, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, ProcessSubstitutionKind,
};
use brush_parser::word::{self, ParameterExpr, WordPiece};
use brush_parser::{Parser, ParserOptions};
use rustc_hash::FxHashMap as HashMap;

use super::words::{credential, is_dev_socket};
use super::{Category, Env, Hit, MAX_SCRIPT};

/// Nested scripts (`sh -c`, `eval`, `$(…)`) deeper than this are not followed.
const MAX_DEPTH: usize = 10;
/// Commands evaluated per analysis at most.
const MAX_STEPS: usize = 5_000;

/// Where a value came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    /// Fetched from the network.
    pub net: bool,
    /// Produced by a decoder (base64, xxd, …).
    pub decoded: bool,
    /// Holds a credential (what it is, for messages).
    pub cred: Option<&'static str>,
}

impl Taint {
    /// Content fetched from the network.
    pub const NET: Taint = Taint {
        net: true,
        decoded: false,
        cred: None,
    };

    pub fn union(self, o: Taint) -> Taint {
        Taint {
            net: self.net || o.net,
            decoded: self.decoded || o.decoded,
            cred: self.cred.or(o.cred),
        }
    }
    /// Content an attacker controls remotely or hid from a reader.
    pub fn is_code_risk(self) -> bool {
        self.net || self.decoded
    }
}

/// A value: a word, a variable, a stream. `text` is exact when `known`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Val {
    pub text: String,
    pub taint: Taint,
    pub known: bool,
}

impl Val {
    pub fn lit(s: impl Into<String>) -> Val {
        Val {
            text: s.into(),
            taint: Taint::default(),
            known: true,
        }
    }
    /// Content whose text isn't known here, only where it came from.
    pub fn opaque(taint: Taint) -> Val {
        Val {
            text: String::new(),
            taint,
            known: false,
        }
    }
    pub fn append(&mut self, o: &Val) {
        self.text.push_str(&o.text);
        self.taint = self.taint.union(o.taint);
        self.known &= o.known;
    }
}

/// What a stage of a pipeline is, for reverse-shell wiring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Other,
    /// A shell (or interpreter) executing what arrives on stdin.
    ShellOnStdin,
    /// A raw socket client (`nc host port`, `telnet`, `openssl s_client`).
    NetClient,
}

#[derive(Clone, Debug, Default)]
pub struct Out {
    pub stdout: Val,
    pub kind: Kind,
}

impl Out {
    /// A socket client: prints what the network sends.
    pub fn net_client() -> Out {
        Out {
            stdout: Val::opaque(Taint::NET),
            kind: Kind::NetClient,
        }
    }
}

pub struct Analyzer<'a> {
    pub(super) vars: HashMap<String, Val>,
    /// Files the script wrote, with what they hold.
    pub(super) files: HashMap<String, Val>,
    /// A downloaded archive was unpacked: its binaries are downloads too.
    pub(super) extracted: bool,
    /// A descriptor was opened on `/dev/tcp`: reading a duplicated
    /// descriptor (`<&3`) reads the network.
    socket_open: bool,
    pub(super) host_mounts: &'a [String],
    hits: Vec<Hit>,
    depth: usize,
    steps: usize,
}

impl<'a> Analyzer<'a> {
    pub fn new(env: &Env, host_mounts: &'a [String]) -> Analyzer<'a> {
        let vars = env
            .iter()
            .map(|(n, v)| {
                let val = match v {
                    Some(text) => Val::lit(text.clone()),
                    None => Val {
                        text: format!("${n}"),
                        taint: Taint::default(),
                        known: false,
                    },
                };
                (n.clone(), val)
            })
            .collect();
        Analyzer {
            vars,
            files: HashMap::default(),
            extracted: false,
            socket_open: false,
            host_mounts,
            hits: Vec::new(),
            depth: 0,
            steps: 0,
        }
    }

    pub fn hit(&mut self, category: Category, detail: impl Into<String>) {
        if !self.hits.iter().any(|h| h.category == category) {
            self.hits.push(Hit {
                category,
                detail: detail.into(),
            });
        }
    }

    /// Report code that came from the network or a decoder and runs.
    pub fn code_from(&mut self, t: Taint, runner: &str) {
        if t.net {
            self.hit(
                Category::DownloadExecute,
                format!("downloaded content runs in {runner}"),
            );
        }
        if t.decoded {
            self.hit(
                Category::EncodedPayload,
                format!("decoded content runs in {runner}"),
            );
        }
    }

    pub fn finish(mut self) -> Vec<Hit> {
        self.hits.sort_by_key(|h| h.category);
        self.hits
    }

    /// Whether there is budget left for one more command.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        self.steps <= MAX_STEPS
    }

    /// Run a script: parsed when it parses, tokens otherwise.
    pub fn script(&mut self, text: &str, stdin: &Val) -> Val {
        if self.depth >= MAX_DEPTH || text.trim().is_empty() {
            return Val::default();
        }
        self.depth += 1;
        let out = match parse(text) {
            Some(program) => {
                let mut out = Val::lit("");
                for list in &program.complete_commands {
                    let o = self.list(list, stdin);
                    out.append(&o);
                }
                out
            }
            None => self.tokens(text, stdin),
        };
        self.depth -= 1;
        out
    }

    fn list(&mut self, list: &CompoundList, stdin: &Val) -> Val {
        let mut out = Val::lit("");
        for item in &list.0 {
            let and_or = &item.0;
            let o = self.pipeline(&and_or.first, stdin);
            out.append(&o);
            for next in &and_or.additional {
                let p = match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => p,
                };
                let o = self.pipeline(p, stdin);
                out.append(&o);
            }
        }
        out
    }

    fn pipeline(&mut self, p: &ast::Pipeline, stdin: &Val) -> Val {
        let mut flow = stdin.clone();
        let mut kinds = Vec::with_capacity(p.seq.len());
        for (i, cmd) in p.seq.iter().enumerate() {
            let input = if i == 0 { stdin.clone() } else { flow };
            let out = self.command(cmd, &input);
            kinds.push(out.kind);
            flow = out.stdout;
        }
        self.wiring(&kinds);
        flow
    }

    /// A shell fed from, and feeding, a socket client is a reverse shell.
    pub fn wiring(&mut self, kinds: &[Kind]) {
        if let Some(shell) = kinds.iter().position(|k| *k == Kind::ShellOnStdin)
            && kinds[shell..].contains(&Kind::NetClient)
        {
            self.hit(
                Category::ReverseShell,
                "a shell's output is piped to a network client",
            );
        }
    }

    fn command(&mut self, cmd: &Command, stdin: &Val) -> Out {
        if !self.step() {
            return Out::default();
        }
        match cmd {
            Command::Simple(s) => self.simple(s, stdin),
            Command::Compound(c, redirects) => {
                let redirects: Vec<&IoRedirect> =
                    redirects.iter().flat_map(|r| r.0.iter()).collect();
                let input = self.inputs(&redirects, stdin);
                let stdout = self.compound(c, &input);
                Out {
                    stdout: self.outputs(&redirects, stdout),
                    kind: Kind::Other,
                }
            }
            Command::Function(f) => {
                self.compound(&f.body.0, &Val::default());
                Out::default()
            }
            Command::ExtendedTest(..) => Out::default(),
        }
    }

    fn compound(&mut self, c: &CompoundCommand, stdin: &Val) -> Val {
        match c {
            CompoundCommand::BraceGroup(b) => self.list(&b.list, stdin),
            CompoundCommand::Subshell(s) => self.list(&s.list, stdin),
            CompoundCommand::ForClause(f) => {
                let mut items = Val::lit("");
                for w in f.values.iter().flatten() {
                    let v = self.word(w);
                    items.append(&v);
                }
                self.vars.insert(f.variable_name.clone(), items);
                self.list(&f.body.list, stdin)
            }
            CompoundCommand::ArithmeticForClause(f) => self.list(&f.body.list, stdin),
            CompoundCommand::CaseClause(c) => {
                self.word(&c.value);
                let mut out = Val::lit("");
                for item in &c.cases {
                    if let Some(l) = &item.cmd {
                        let o = self.list(l, stdin);
                        out.append(&o);
                    }
                }
                out
            }
            CompoundCommand::IfClause(i) => {
                let mut out = self.list(&i.condition, stdin);
                let o = self.list(&i.then, stdin);
                out.append(&o);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        let o = self.list(c, stdin);
                        out.append(&o);
                    }
                    let o = self.list(&e.body, stdin);
                    out.append(&o);
                }
                out
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                let mut out = self.list(&w.0, stdin);
                let o = self.list(&w.1.list, stdin);
                out.append(&o);
                out
            }
            CompoundCommand::Coprocess(c) => self.command(&c.body, stdin).stdout,
            CompoundCommand::Arithmetic(_) => Val::default(),
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, stdin: &Val) -> Out {
        let mut argv: Vec<Val> = Vec::new();
        let mut redirects: Vec<&IoRedirect> = Vec::new();
        let mut assigns: Vec<(String, Val)> = Vec::new();
        let mut writers: Vec<&ast::SubshellCommand> = Vec::new();
        let items = s
            .prefix
            .iter()
            .flat_map(|p| p.0.iter())
            .map(Some)
            .chain(std::iter::once(None))
            .chain(s.suffix.iter().flat_map(|p| p.0.iter()).map(Some));
        for item in items {
            match item {
                None => {
                    if let Some(w) = &s.word_or_name {
                        let v = self.word(w);
                        argv.push(v);
                    }
                }
                Some(CommandPrefixOrSuffixItem::IoRedirect(r)) => redirects.push(r),
                Some(CommandPrefixOrSuffixItem::Word(w)) => {
                    let v = self.word(w);
                    argv.push(v);
                }
                Some(CommandPrefixOrSuffixItem::AssignmentWord(a, _)) => {
                    let value = match &a.value {
                        ast::AssignmentValue::Scalar(v) => self.word(v),
                        ast::AssignmentValue::Array(items) => {
                            let mut all = Val::lit("");
                            for (_, v) in items {
                                let v = self.word(v);
                                all.append(&Val::lit(" "));
                                all.append(&v);
                            }
                            all
                        }
                    };
                    let name = match &a.name {
                        ast::AssignmentName::VariableName(n)
                        | ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
                    };
                    if !argv.is_empty() {
                        // `export X=…`, `declare X=…`: an argument too.
                        let mut arg = Val::lit(format!("{name}="));
                        arg.append(&value);
                        argv.push(arg);
                    }
                    assigns.push((name, value));
                }
                Some(CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub)) => match kind {
                    ProcessSubstitutionKind::Read => {
                        let out = self.list(&sub.list, &Val::default());
                        argv.push(Val {
                            text: "/dev/fd/63".into(),
                            taint: out.taint,
                            known: false,
                        });
                        if out.known && !out.text.is_empty() {
                            self.files.insert("/dev/fd/63".into(), out);
                        }
                    }
                    ProcessSubstitutionKind::Write => {
                        writers.push(sub);
                        argv.push(Val {
                            text: "/dev/fd/63".into(),
                            taint: Taint::default(),
                            known: false,
                        });
                    }
                },
            }
        }
        let is_declaration = argv.first().is_some_and(|a| {
            matches!(
                a.text.as_str(),
                "export" | "declare" | "local" | "readonly" | "typeset"
            )
        });
        if argv.is_empty() || is_declaration {
            for (n, v) in assigns {
                self.vars.insert(n, v);
            }
        }
        let input = self.inputs(&redirects, stdin);
        let out = if argv.is_empty() {
            Out::default()
        } else {
            self.exec(argv, input.clone())
        };
        for sub in writers {
            let mut feed = input.clone();
            feed.append(&out.stdout);
            self.list(&sub.list, &feed);
        }
        Out {
            stdout: self.outputs(&redirects, out.stdout),
            kind: out.kind,
        }
    }

    /// stdin after `<`, here-documents and here-strings.
    fn inputs(&mut self, redirects: &[&IoRedirect], stdin: &Val) -> Val {
        let mut input = stdin.clone();
        for r in redirects {
            match r {
                IoRedirect::File(fd, kind, target) => {
                    let from_fd = match target {
                        IoFileRedirectTarget::Fd(n) => Some(*n),
                        _ => None,
                    };
                    let target = self.target(target, &Val::default());
                    self.socket_check(&target.text);
                    let reads_stdin = fd.is_none_or(|fd| fd == 0);
                    match kind {
                        IoFileRedirectKind::Read | IoFileRedirectKind::ReadAndWrite
                            if reads_stdin =>
                        {
                            input = self.read_file(&target);
                        }
                        IoFileRedirectKind::DuplicateInput if reads_stdin => {
                            let n = from_fd.or_else(|| target.text.trim().parse().ok());
                            if self.socket_open && n.is_some_and(|n| n >= 3) {
                                input.taint.net = true;
                                input.known = false;
                            }
                        }
                        _ => {}
                    }
                }
                IoRedirect::HereString(_, w) => {
                    input = self.word(w);
                    input.append(&Val::lit("\n"));
                }
                IoRedirect::HereDocument(_, doc) => {
                    input = if doc.requires_expansion {
                        match guarded(|| word::parse_heredoc(&doc.doc.value, &options())) {
                            Some(Ok(pieces)) => self.pieces(&pieces),
                            _ => Val::lit(doc.doc.value.clone()),
                        }
                    } else {
                        Val::lit(doc.doc.value.clone())
                    };
                }
                IoRedirect::OutputAndError(w, _) => {
                    let t = self.word(w);
                    self.socket_check(&t.text);
                }
            }
        }
        input
    }

    /// stdout after `>` / `>>` / `&>` into files (and process substitutions).
    fn outputs(&mut self, redirects: &[&IoRedirect], stdout: Val) -> Val {
        let mut stdout = stdout;
        for r in redirects {
            let path = match r {
                IoRedirect::File(fd, kind, target)
                    if matches!(
                        kind,
                        IoFileRedirectKind::Write
                            | IoFileRedirectKind::Append
                            | IoFileRedirectKind::Clobber
                            | IoFileRedirectKind::DuplicateOutput
                    ) && fd.is_none_or(|fd| fd == 1) =>
                {
                    if let IoFileRedirectTarget::ProcessSubstitution(_, sub) = target {
                        let feed = std::mem::take(&mut stdout);
                        self.list(&sub.list, &feed);
                        continue;
                    }
                    self.target(target, &Val::default()).text
                }
                IoRedirect::OutputAndError(w, _) => self.word(w).text,
                _ => continue,
            };
            if path.starts_with("/dev/") || path.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let written = std::mem::take(&mut stdout);
            self.write_file(&path, written);
        }
        stdout
    }

    fn target(&mut self, t: &IoFileRedirectTarget, stdin: &Val) -> Val {
        match t {
            IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w) => self.word(w),
            IoFileRedirectTarget::Fd(_) => Val::default(),
            IoFileRedirectTarget::ProcessSubstitution(kind, sub) => {
                let out = self.list(&sub.list, stdin);
                Val {
                    text: "/dev/fd/63".into(),
                    taint: if matches!(kind, ProcessSubstitutionKind::Read) {
                        out.taint
                    } else {
                        Taint::default()
                    },
                    known: false,
                }
            }
        }
    }

    pub fn socket_check(&mut self, target: &str) {
        if is_dev_socket(target) {
            self.socket_open = true;
            self.hit(
                Category::ReverseShell,
                format!("redirection to {}", target.trim()),
            );
        }
    }

    /// What reading a path yields: a file the script wrote, a credential,
    /// a socket.
    pub fn read_file(&mut self, path: &Val) -> Val {
        let mut v = Val::opaque(path.taint);
        if let Some(f) = self.files.get(&path.text) {
            v = f.clone();
        }
        if let Some(what) = credential(&path.text) {
            v.taint.cred = Some(what);
        }
        if is_dev_socket(&path.text) {
            v.taint.net = true;
        }
        v
    }

    pub fn write_file(&mut self, path: &str, content: Val) {
        if self.files.len() < 256 {
            self.files.insert(path.to_owned(), content);
        }
    }

    /// A file the script downloaded or decoded, by path or by name.
    pub fn file_taint(&self, path: &str) -> Option<Taint> {
        let base = path.rsplit('/').next().unwrap_or(path);
        self.files
            .iter()
            .find(|(p, _)| {
                p.as_str() == path || (!base.is_empty() && p.rsplit('/').next() == Some(base))
            })
            .map(|(_, v)| v.taint)
            .filter(|t| t.is_code_risk())
    }

    /// Expand a word: quotes removed, known variables substituted,
    /// substitutions run.
    pub fn word(&mut self, w: &ast::Word) -> Val {
        match guarded(|| word::parse(&w.value, &options())) {
            Some(Ok(pieces)) => self.pieces(&pieces),
            _ => self.token(&w.value),
        }
    }

    fn pieces(&mut self, pieces: &[word::WordPieceWithSource]) -> Val {
        let mut v = Val::lit("");
        for p in pieces {
            match &p.piece {
                WordPiece::Text(s) | WordPiece::SingleQuotedText(s) => {
                    v.append(&Val::lit(s.clone()))
                }
                WordPiece::AnsiCQuotedText(s) => v.append(&Val::lit(ansi_c(s))),
                WordPiece::EscapeSequence(s) => {
                    v.append(&Val::lit(s.strip_prefix('\\').unwrap_or(s).to_owned()))
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    let inner = self.pieces(inner);
                    v.append(&inner);
                }
                WordPiece::TildeExpansion(_) => v.append(&Val::lit("~")),
                WordPiece::ParameterExpansion(expr) => {
                    let p = self.parameter(expr);
                    v.append(&p);
                }
                WordPiece::CommandSubstitution(s) | WordPiece::BackquotedCommandSubstitution(s) => {
                    let out = self.script(s, &Val::default());
                    let out = Val {
                        text: out.text.trim_end_matches('\n').to_owned(),
                        ..out
                    };
                    v.append(&out);
                }
                WordPiece::ArithmeticExpression(_) => v.append(&Val {
                    text: "0".into(),
                    taint: Taint::default(),
                    known: false,
                }),
            }
        }
        v
    }

    fn parameter(&mut self, expr: &ParameterExpr) -> Val {
        let (param, fallback) = match expr {
            ParameterExpr::Parameter { parameter, .. } => (parameter, None),
            ParameterExpr::UseDefaultValues {
                parameter,
                default_value,
                ..
            }
            | ParameterExpr::AssignDefaultValues {
                parameter,
                default_value,
                ..
            } => (parameter, default_value.as_deref()),
            ParameterExpr::UseAlternativeValue {
                parameter,
                alternative_value,
                ..
            } => (parameter, alternative_value.as_deref()),
            ParameterExpr::IndicateErrorIfNullOrUnset { parameter, .. }
            | ParameterExpr::RemoveSmallestSuffixPattern { parameter, .. }
            | ParameterExpr::RemoveLargestSuffixPattern { parameter, .. }
            | ParameterExpr::RemoveSmallestPrefixPattern { parameter, .. }
            | ParameterExpr::RemoveLargestPrefixPattern { parameter, .. }
            | ParameterExpr::Substring { parameter, .. }
            | ParameterExpr::Transform { parameter, .. }
            | ParameterExpr::UppercaseFirstChar { parameter, .. }
            | ParameterExpr::UppercasePattern { parameter, .. }
            | ParameterExpr::LowercaseFirstChar { parameter, .. }
            | ParameterExpr::LowercasePattern { parameter, .. }
            | ParameterExpr::ReplaceSubstring { parameter, .. } => (parameter, None),
            ParameterExpr::ParameterLength { .. }
            | ParameterExpr::VariableNames { .. }
            | ParameterExpr::MemberKeys { .. } => return Val::default(),
        };
        let name = match param {
            word::Parameter::Named(n)
            | word::Parameter::NamedWithIndex { name: n, .. }
            | word::Parameter::NamedWithAllIndices { name: n, .. } => n.as_str(),
            _ => {
                return Val::opaque(Taint::default());
            }
        };
        // A transformed value keeps its taint; its text is a guess.
        let exact = matches!(expr, ParameterExpr::Parameter { .. });
        match self.vars.get(name) {
            Some(v) => Val {
                known: v.known && exact,
                ..v.clone()
            },
            None => match fallback {
                Some(d) => {
                    let w = ast::Word {
                        value: d.to_owned(),
                        loc: None,
                    };
                    self.word(&w)
                }
                None => Val {
                    text: format!("${name}"),
                    taint: Taint::default(),
                    known: false,
                },
            },
        }
    }

    /// A word that didn't parse: quotes dropped, `$(…)`/backticks run.
    fn token(&mut self, raw: &str) -> Val {
        let mut v = Val {
            text: raw.replace(['\'', '"', '\\'], ""),
            taint: Taint::default(),
            known: false,
        };
        for inner in substitutions(raw) {
            let out = self.script(inner, &Val::default());
            v.taint = v.taint.union(out.taint);
        }
        v
    }

    /// A script that doesn't parse, read as plain tokens: commands split at
    /// `;`, `&`, `|` and new lines, words at blanks.
    fn tokens(&mut self, text: &str, stdin: &Val) -> Val {
        let mut out = Val::lit("");
        for pipeline in split_outside_quotes(text, &[";", "&&", "||", "&", "\n"]) {
            let mut flow = stdin.clone();
            let mut kinds = Vec::new();
            for stage in split_outside_quotes(pipeline, &["|"]) {
                if !self.step() {
                    return out;
                }
                let mut argv = Vec::new();
                let mut input = flow.clone();
                let mut written: Option<String> = None;
                let mut words = stage.split_whitespace().peekable();
                while let Some(w) = words.next() {
                    if let Some(rest) = w
                        .strip_prefix(">&")
                        .or_else(|| w.strip_prefix("&>"))
                        .or_else(|| w.strip_prefix(">>"))
                        .or_else(|| w.strip_prefix('>'))
                        .or_else(|| w.strip_prefix("<>"))
                        .or_else(|| w.strip_prefix('<'))
                    {
                        let target = if rest.is_empty() {
                            words.next().unwrap_or("")
                        } else {
                            rest
                        };
                        let t = self.token(target);
                        self.socket_check(&t.text);
                        if w.starts_with('<') {
                            input = self.read_file(&t);
                        } else {
                            written = Some(t.text);
                        }
                        continue;
                    }
                    let w = w
                        .trim_start_matches(['(', '{'])
                        .trim_end_matches([')', '}']);
                    let keyword = argv.is_empty()
                        && matches!(
                            w,
                            "if" | "then"
                                | "else"
                                | "elif"
                                | "fi"
                                | "do"
                                | "done"
                                | "while"
                                | "until"
                                | "!"
                                | "time"
                                | "esac"
                        );
                    if keyword || w.trim_matches(['\'', '"']).is_empty() {
                        // Grouping, keywords, a stray quote (why it didn't parse).
                        continue;
                    }
                    argv.push(self.token(w));
                }
                let o = if argv.is_empty() {
                    Out::default()
                } else {
                    self.exec(argv, input)
                };
                kinds.push(o.kind);
                flow = o.stdout;
                if let Some(path) = written {
                    let content = std::mem::take(&mut flow);
                    self.write_file(&path, content);
                }
            }
            self.wiring(&kinds);
            out.append(&flow);
        }
        out
    }
}

fn options() -> ParserOptions {
    ParserOptions {
        // `@(…)` globs would swallow text that bash reads as plain words.
        enable_extended_globbing: false,
        ..ParserOptions::default()
    }
}

/// The AST of a script, or `None` when it is too long or doesn't parse.
fn parse(text: &str) -> Option<ast::Program> {
    if text.len() > MAX_SCRIPT
        || text.contains('\0')
        || nesting(text) > MAX_NESTING
        || here_tag_may_be_empty(text)
    {
        return None;
    }
    let mut parser = Parser::new(Cursor::new(text.as_bytes()), &options());
    guarded(|| parser.parse_program())?.ok()
}

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run brush-parser, third-party code fed an attacker's text, so that a
/// panic in it is `None` (the caller falls back to reading tokens) instead
/// of a panic in the engine, which would stop every evaluation. Found by
/// `fuzz/`: brush-parser 0.4 unwraps integer parses, so an I/O number,
/// a `~+N` or a brace sequence bound beyond the integer's range panics
/// (`99999999999>x`, `~+99999999999999999999`, `{1..99999999999999999999}`).
/// Such a panic is expected here and not printed: a tenant's CronJob would
/// otherwise write a panic message to the log at every evaluation. Panics
/// anywhere else still reach the hook that was installed before.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    GUARDED.with(|g| g.set(outer));
    out
}

/// Whether a here-document's delimiter may reach brush-parser's tokenizer
/// as an empty tag. brush-parser 0.4 then loops at the end of the input,
/// queueing an empty token per turn until memory runs out (found by
/// `fuzz/`: the six bytes `$(<<` and two blanks took more than 2 GiB in a
/// second; `cat <<"" `, `<<$(  ` and `\<<<'' ` do the same). The tag is
/// empty when the word after `<<`/`<<-` is missing or only quotes and
/// backslashes, or when it holds a substitution, whose first blank-only
/// piece becomes the tag. Such scripts are read as tokens, so this errs
/// wide: any `$` or backquote in the word counts (delimiters are plain
/// words like `EOF`); unescaped `<<<` here-strings do not; line
/// continuations are joined first. Checked against brush-parser itself
/// (under an allocation cap) with every script up to six characters over
/// `$()<-'"\`, blank, tab, newline, `x{;` and backquote (12 M scripts), and
/// up to seven over three smaller sets (38 M): none left over loops.
fn here_tag_may_be_empty(text: &str) -> bool {
    let text = text.replace("\\\n", "");
    let b = text.as_bytes();
    let ends_word = |c: u8| c.is_ascii_whitespace() || b";&|()<>".contains(&c);
    let mut at = 0;
    while at + 1 < b.len() {
        // A here-string, unless its first `<` is escaped (`\<<<''` is a
        // literal `<` and a here-document).
        if b[at..].starts_with(b"<<<") && (at == 0 || b[at - 1] != b'\\') {
            at += 3;
            continue;
        }
        if &b[at..at + 2] == b"<<" {
            let mut j = at + 2;
            if b.get(j) == Some(&b'-') {
                j += 1;
            }
            while b.get(j).is_some_and(|c| matches!(c, b' ' | b'\t')) {
                j += 1;
            }
            let word = b[j..].iter().take_while(|&&c| !ends_word(c));
            let (mut plain, mut substitution) = (false, false);
            for c in word {
                substitution |= matches!(c, b'$' | b'`');
                plain |= !matches!(c, b'\'' | b'"' | b'\\');
            }
            if substitution || !plain {
                return true;
            }
        }
        at += 1;
    }
    false
}

/// Deeper nesting than this is read as tokens: the parser recurses per
/// level, and an attacker's script must not exhaust the stack. Nor its
/// time: brush-parser backtracks exponentially on unclosed parentheses
/// (found by `fuzz/`: `$(` and 31 `(` took minutes; per input, 12 levels
/// 0 ms, 14 2 ms, 16 15 ms, 20 ~0.3 s, 26 ~14 s, doubling per level), and
/// evaluation runs on the controller's only planning thread.
const MAX_NESTING: usize = 12;

/// An upper bound on how deeply a script nests: brackets and the
/// keywords that open compound commands, ignoring quotes.
fn nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut word = String::new();
    let close_word = |w: &str, depth: &mut usize| match w {
        "if" | "while" | "until" | "for" | "case" | "select" => *depth += 1,
        "fi" | "done" | "esac" => *depth = depth.saturating_sub(1),
        _ => {}
    };
    for c in text.chars() {
        match c {
            '(' | '{' | '[' | '`' => depth += 1,
            ')' | '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else if !word.is_empty() {
            close_word(&word, &mut depth);
            word.clear();
        }
        max = max.max(depth);
    }
    close_word(&word, &mut depth);
    max.max(depth)
}

/// The `$(…)` and backtick bodies in a raw word, without parsing.
fn substitutions(raw: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.find("$(") {
        let body = &rest[i + 2..];
        let mut depth = 1;
        let mut end = body.len();
        for (j, c) in body.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(&body[..end]);
        rest = &body[end..];
    }
    let mut parts = raw.split('`');
    parts.next();
    while let Some(inner) = parts.next() {
        out.push(inner);
        parts.next();
    }
    out
}

/// Split at any of `seps` outside quotes (tolerant: an unbalanced quote
/// runs to the end).
fn split_outside_quotes<'t>(text: &'t str, seps: &[&str]) -> Vec<&'t str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let c = bytes[i] as char;
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '\\' => i += 1,
            None if text.is_char_boundary(i) => {
                if let Some(sep) = seps.iter().find(|s| text[i..].starts_with(**s)) {
                    // `||` is not two pipes; `&&` not two `&`.
                    if *sep == "|" && text[i..].starts_with("||") {
                        i += 2;
                        continue;
                    }
                    out.push(&text[start..i]);
                    i += sep.len();
                    start = i;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    if start <= text.len() {
        out.push(text.get(start..).unwrap_or(""));
    }
    out
}

/// Decode bash's `$'…'` escapes (`\x63`, `\143`, `\n`, `\u0063`); also
/// what `printf`/`echo -e` do with them.
pub fn ansi_c(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('e') | Some('E') => out.push('\x1b'),
            Some('x') => {
                let hex: String = std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_hexdigit()))
                    .take(2)
                    .collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some('u') | Some('U') => {
                let hex: String = std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_hexdigit()))
                    .take(8)
                    .collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(d @ '0'..='7') => {
                let mut oct = d.to_string();
                while oct.len() < 3 {
                    match chars.next_if(|c| ('0'..='7').contains(c)) {
                        Some(c) => oct.push(c),
                        None => break,
                    }
                }
                if let Some(ch) = u32::from_str_radix(&oct, 8).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_c_quotes() {
        assert_eq!(ansi_c(r"\x63\x75rl"), "curl");
        assert_eq!(ansi_c(r"\143url"), "curl");
        assert_eq!(ansi_c(r"a\nb\\"), "a\nb\\");
    }

    #[test]
    fn splits_outside_quotes() {
        assert_eq!(
            split_outside_quotes("a | b 'c|d' || e", &["|"]),
            vec!["a ", " b 'c|d' || e"]
        );
        assert_eq!(
            substitutions("x$(curl a)y`wget b`"),
            vec!["curl a", "wget b"]
        );
    }

    #[test]
    fn here_tags_that_may_be_empty() {
        for wide in [
            "$(<<  ",
            "cat <<",
            "cat << ;x",
            "cat <<''",
            "cat <<-\"\"",
            "cat <<\\\n\n",
            "<<$(  )",
            "cat <<\"a$(b)\"",
            "cat <<`x`",
            "cat <\\\n<''",
            "\\<<<'' ",
        ] {
            assert!(here_tag_may_be_empty(wide), "{wide:?}");
            assert!(parse(wide).is_none(), "{wide:?}");
        }
        for plain in [
            "cat <<EOF\nx\nEOF",
            "cat <<-'EOF'\n\tx\n\tEOF",
            "cat << \"EOF\"\nx\nEOF",
            "sh <<< \"$x\"",
            "sh <<<''",
            "echo $((1<<4))",
        ] {
            assert!(!here_tag_may_be_empty(plain), "{plain:?}");
            assert!(parse(plain).is_some(), "{plain:?}");
        }
    }
}
