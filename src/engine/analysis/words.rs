//! What single words mean to the analysis: program names, credential
//! locations, destinations, miners. Pure string classification; the data
//! flow lives in [`super::shell`] and [`super::programs`].

/// The program a word names: its basename, lower-cased, with a Windows
/// `.exe` dropped (`/usr/bin/curl`, `CURL`, `powershell.exe`).
pub fn program(word: &str) -> String {
    let base = word.rsplit(['/', '\\']).next().unwrap_or(word);
    let base = base.to_ascii_lowercase();
    base.strip_suffix(".exe").map(str::to_owned).unwrap_or(base)
}

/// POSIX shells and busybox's: `-c` takes a script.
pub fn is_shell(p: &str) -> bool {
    matches!(
        p,
        "sh" | "bash" | "dash" | "ash" | "zsh" | "ksh" | "mksh" | "yash" | "rbash" | "hush"
    )
}

/// Interpreters with inline code flags (SPEC 3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Python,
    Perl,
    Ruby,
    Node,
    Php,
    PowerShell,
    Lua,
}

pub fn interpreter(p: &str) -> Option<Lang> {
    let versioned = |prefix: &str| {
        p.strip_prefix(prefix)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    Some(match p {
        _ if versioned("python") || versioned("pypy") => Lang::Python,
        _ if versioned("perl") => Lang::Perl,
        _ if versioned("ruby") || p == "jruby" => Lang::Ruby,
        "node" | "nodejs" | "deno" | "bun" => Lang::Node,
        _ if versioned("php") => Lang::Php,
        "pwsh" | "powershell" => Lang::PowerShell,
        _ if versioned("lua") || p == "luajit" => Lang::Lua,
        _ => return None,
    })
}

/// Programs that fetch from the network and print or save what they got.
pub fn is_fetcher(p: &str) -> bool {
    matches!(
        p,
        "curl"
            | "wget"
            | "wget2"
            | "fetch"
            | "aria2c"
            | "axel"
            | "http"
            | "https"
            | "xh"
            | "lwp-download"
            | "lwp-request"
            | "get"
            | "tftp"
            | "ftp"
            | "lftp"
    )
}

/// Raw socket clients: `nc host port` fetches, and sends.
pub fn is_net_client(p: &str) -> bool {
    matches!(
        p,
        "nc" | "ncat"
            | "netcat"
            | "nc.traditional"
            | "nc.openbsd"
            | "telnet"
            | "socat"
            | "rcat"
            | "pwncat"
            | "sbd"
            | "cryptcat"
            | "gsocket"
            | "gs-netcat"
    )
}

/// Programs that carry data to another host (credential theft sinks).
pub fn is_sender(p: &str) -> bool {
    is_fetcher(p)
        || is_net_client(p)
        || matches!(
            p,
            "scp"
                | "sftp"
                | "rsync"
                | "sendmail"
                | "mail"
                | "mailx"
                | "mutt"
                | "ssh"
                | "aws"
                | "gsutil"
                | "gcloud"
                | "az"
                | "rclone"
                | "s3cmd"
                | "mc"
                | "openssl"
        )
}

/// Well-known miner programs (SPEC 3.3, category 4).
pub const MINERS: &[&str] = &[
    "xmrig",
    "xmr-stak",
    "xmr-stak-cpu",
    "xmr-stak-rx",
    "cpuminer",
    "cpuminer-multi",
    "cpuminer-opt",
    "minerd",
    "t-rex",
    "lolminer",
    "nbminer",
    "ethminer",
    "nanominer",
    "srbminer",
    "srbminer-multi",
    "teamredminer",
    "gminer",
    "phoenixminer",
    "bzminer",
    "ccminer",
    "cgminer",
    "bfgminer",
    "kawpowminer",
    "trex",
    "xmrig-notls",
    "xmrig-cuda",
    "kdevtmpfsi",
    "kinsing",
];

/// A miner by program name, or a file named after one (`xmrig-6.21.0-linux-x64.tar.gz`).
pub fn miner_name(word: &str) -> Option<&'static str> {
    let base = program(word);
    MINERS.iter().copied().find(|m| {
        base == *m
            || base
                .strip_prefix(m)
                .is_some_and(|rest| rest.starts_with(['-', '.', '_']))
    })
}

/// Miner pool URL schemes.
pub fn has_pool_url(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    w.contains("stratum+tcp://")
        || w.contains("stratum+ssl://")
        || w.contains("stratum+tls://")
        || w.contains("stratum2+tcp://")
        || w.contains("stratum1+tcp://")
}

/// Mining algorithms given to `-a/--algo`.
pub fn is_mining_algo(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    v.starts_with("cryptonight")
        || v.starts_with("rx/")
        || v.starts_with("cn/")
        || v.starts_with("randomx")
        || matches!(
            v.as_str(),
            "kawpow" | "ethash" | "etchash" | "autolykos2" | "kheavyhash" | "argon2" | "ghostrider"
        )
}

/// `/dev/tcp/host/port` or `/dev/udp/…`: bash opens a socket.
pub fn is_dev_socket(word: &str) -> bool {
    word.contains("/dev/tcp/") || word.contains("/dev/udp/")
}

/// What a credential location holds, for messages.
pub fn credential(word: &str) -> Option<&'static str> {
    let w = word.to_ascii_lowercase();
    let in_secrets = w.contains("/run/secrets/");
    if in_secrets
        && (w.contains("serviceaccount/token") || w.contains("/tokens/") || w.ends_with("token"))
    {
        return Some("the service-account token");
    }
    if w.contains(".kube/config")
        || w.contains("$kubeconfig")
        || w.contains("${kubeconfig}")
        || (w.contains("/etc/kubernetes/") && w.ends_with(".conf"))
        || w.contains("/var/lib/kubelet/kubeconfig")
    {
        return Some("a kubeconfig");
    }
    if w.contains("/etc/kubernetes/pki/") && w.ends_with(".key") {
        return Some("a cluster private key");
    }
    let metadata = w.contains("169.254.169.254")
        || w.contains("metadata.google.internal")
        || w.contains("fd00:ec2::254")
        || w.contains("100.100.100.200");
    if metadata
        && (w.contains("security-credentials")
            || w.contains("/token")
            || w.contains("identity")
            || w.contains("/api/token"))
    {
        return Some("cloud metadata credentials");
    }
    if w.contains("169.254.170.2") {
        return Some("container credentials");
    }
    None
}

/// Whether a destination is the cluster's own API server, where the
/// service-account token is meant to go (SPEC 3.3: quiet).
pub fn is_api_server(host: &str) -> bool {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    matches!(
        h.as_str(),
        "kubernetes"
            | "kubernetes.default"
            | "kubernetes.default.svc"
            | "kubernetes.default.svc.cluster.local"
            | "$kubernetes_service_host"
            | "${kubernetes_service_host}"
            | "$(kubernetes_service_host)"
    )
}

/// The host of a URL or `host:port` word, if it looks like one.
pub fn host_of(word: &str) -> Option<&str> {
    let rest = match word.find("://") {
        Some(i) => &word[i + 3..],
        None => word,
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let hostport = &rest[..end];
    let host = if let Some(stripped) = hostport.strip_prefix('[') {
        stripped.split(']').next().unwrap_or(stripped)
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    (!host.is_empty()).then_some(host)
}

/// A chmod mode that makes a file executable.
pub fn grants_exec(mode: &str) -> bool {
    if mode.chars().all(|c| c.is_ascii_digit()) && !mode.is_empty() {
        return mode
            .chars()
            .rev()
            .take(3)
            .any(|d| matches!(d, '1' | '3' | '5' | '7'));
    }
    mode.split(',').any(|clause| {
        clause.contains('+') && clause.rsplit('+').next().is_some_and(|p| p.contains('x'))
    }) || mode.contains("=") && mode.rsplit('=').next().is_some_and(|p| p.contains('x'))
}

/// Paths an attacker's dropped binary usually runs from.
pub fn is_scratch_path(p: &str) -> bool {
    p.starts_with("./")
        || p.starts_with("/tmp/")
        || p.starts_with("/dev/shm/")
        || p.starts_with("/var/tmp/")
        || p.starts_with("/run/")
        || (!p.starts_with('/') && p.contains('/'))
}
