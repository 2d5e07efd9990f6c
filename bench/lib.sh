# Helpers the bench/*.sh scripts share (sourced, not run).

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT [PID [SECONDS]]: waits until 127.0.0.1:PORT accepts
# (SECONDS, default 20); fails at once if process PID has exited.
wait_port() {
  local tries=$((${3:-20} * 10))
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

# kv LINE KEY: the value of KEY=value in a RESULT line of certmq-loadgen.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# trust_ca HTTP_PORT PEM [TENANT [AUTO]]: uploads PEM as a trusted CA of
# TENANT (default management) through the REST API, as the bench admin
# (CERTMQ_ADMIN_PASSWORD=bench-admin-password), with auto-registration
# AUTO (true/false, default true). Fails when the upload is refused.
trust_ca() {
  python3 - "$2" "${4:-true}" <<'PY' | curl -sf -o /dev/null -u management/admin:bench-admin-password \
      -H 'Content-Type: application/json' --data-binary @- \
      "http://127.0.0.1:$1/tenant/tenants/${3:-management}/trusted-certificates"
import json, sys
print(json.dumps({"name": "bench device CA", "status": "ENABLED",
                  "autoRegistrationEnabled": sys.argv[2] == "true",
                  "certInPemFormat": open(sys.argv[1]).read()}))
PY
}
