#!/usr/bin/env bash
# The syslog tests' driver: starts a private rsyslogd (imtcp plain and TLS,
# imudp, imuxsock on two private sockets, imrelp; loopback ports the kernel
# gave as free, a private directory), runs a client program against it, and
# checks what rsyslog wrote. Never touches /dev/log or the system's rsyslog;
# the server is stopped by pid and its directory removed, always (trap).
#
#   run.sh CASE CLIENT         run one case (fields, down_at_start,
#                              restart_relp, restart_tcp, restart_tls, pause,
#                              unix_reconnect, example; bench for
#                              bench/syslog_bench.sh)
#   run.sh hook ACTION DIR     used by the client: start, stop, kill,
#                              restart, kill_restart, pause, cont
set -euo pipefail

ready() { # DIR: wait until every input listens
  local d=$1 i
  . "$d/ports"
  for i in $(seq 200); do
    if [ -S "$d/log.sock" ] && [ -S "$d/log5424.sock" ] &&
       ss -ltn | grep -q "127.0.0.1:$TCP " && ss -ltn | grep -q "127.0.0.1:$TLS " &&
       ss -ltn | grep -q "127.0.0.1:$RELP " && ss -lun | grep -q "127.0.0.1:$UDP "; then
      return 0
    fi
    sleep 0.05
  done
  echo "rsyslogd did not get ready; its output:" >&2
  cat "$d/rsyslogd.out" >&2 || true
  return 1
}

start() {
  local d=$1
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslog.pid" >>"$d/rsyslogd.out" 2>&1 &
  echo $! >"$d/server.pid"
  disown $! 2>/dev/null || true
  ready "$d"
}

wait_gone() { # PID
  local i
  for i in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  echo "rsyslogd $1 did not exit" >&2
  return 1
}

stop() { # DIR SIGNAL
  local d=$1 sig=${2:-TERM} pid
  [ -f "$d/server.pid" ] || return 0
  pid=$(cat "$d/server.pid")
  kill -CONT "$pid" 2>/dev/null || true
  kill "-$sig" "$pid" 2>/dev/null || true
  wait_gone "$pid"
  rm -f "$d/server.pid" "$d/rsyslog.pid"
}

if [ "${1:-}" = hook ]; then
  action=$2 d=$3
  case $action in
    start) start "$d" ;;
    stop) stop "$d" TERM ;;
    kill) stop "$d" KILL ;;
    restart) stop "$d" TERM; start "$d" ;;
    kill_restart) stop "$d" KILL; start "$d" ;;
    pause) kill -STOP "$(cat "$d/server.pid")" ;;
    cont) kill -CONT "$(cat "$d/server.pid")" ;;
    *) echo "unknown hook $action" >&2; exit 2 ;;
  esac
  exit 0
fi

case_name=$1 client=$2
here=$(cd "$(dirname "$0")" && pwd)
for tool in rsyslogd openssl python3 ss; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (.ci/run installs it)"; exit 77; }
done
for mod in lmnsd_ossl imrelp; do
  [ -e "/usr/lib/x86_64-linux-gnu/rsyslog/$mod.so" ] ||
    { echo "SKIP: rsyslog module $mod is not installed (.ci/run installs it)"; exit 77; }
done

D=$(mktemp -d /tmp/ql-syslog.XXXXXX)
cleanup() {
  stop "$D" KILL 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT

# Five free loopback ports (four TCP, one UDP), as the kernel gives them.
python3 - "$D/ports" <<'PY'
import socket, sys
socks, ports = [], []
for kind in ("TCP", "TLS", "RELP"):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s); ports.append((kind, s.getsockname()[1]))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); socks.append(u)
ports.append(("UDP", u.getsockname()[1]))
open(sys.argv[1], "w").write("".join("%s=%d\n" % p for p in ports))
PY
. "$D/ports"

# A CA and a server certificate for localhost and 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ql-test-ca \
  -keyout "$D/ca.key" -out "$D/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
  -keyout "$D/server.key" -out "$D/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$D/san.ext"
openssl x509 -req -in "$D/server.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
  -days 1 -extfile "$D/san.ext" -out "$D/server.pem" 2>/dev/null
# Another CA, which signed nothing the server shows.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ql-other-ca \
  -keyout "$D/other.key" -out "$D/other.pem" 2>/dev/null

mkdir -p "$D/work"
cat >"$D/rsyslog.conf" <<CONF
global(workDirectory="$D/work" maxMessageSize="256k")
# Direct: a message is in the file (written) before imrelp acknowledges it,
# so a killed rsyslogd loses nothing it acknowledged.
main_queue(queue.type="Direct")
module(load="imuxsock" SysSock.Use="off")
module(load="imtcp")
module(load="imudp")
module(load="imrelp")
input(type="imrelp" port="$RELP" address="127.0.0.1" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="$TCP" ruleset="out")
input(type="imudp" address="127.0.0.1" port="$UDP" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="$TLS" ruleset="out" streamDriver.name="ossl"
      streamDriver.mode="1" streamDriver.authMode="anon" streamDriver.CAFile="$D/ca.pem"
      streamDriver.CertFile="$D/server.pem" streamDriver.KeyFile="$D/server.key")
input(type="imuxsock" Socket="$D/log.sock" CreatePath="on" RateLimit.Interval="0" ruleset="out")
input(type="imuxsock" Socket="$D/log5424.sock" UseSpecialParser="off" RateLimit.Interval="0" ruleset="out")
template(name="fields" type="string"
  string="%inputname%|%pri%|%timestamp:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="out") { action(type="omfile" file="$D/out.log" template="fields") }
CONF
rsyslogd -N1 -f "$D/rsyslog.conf" >"$D/check.out" 2>&1 || { cat "$D/check.out"; exit 1; }

export QLS_DIR=$D QLS_TCP=$TCP QLS_TLS=$TLS QLS_UDP=$UDP QLS_RELP=$RELP
export QLS_HOOK="bash $here/run.sh hook"

case $case_name in
  down_at_start) ;;              # the client starts the server itself
  *) start "$D" ;;
esac

# The client, bounded in time; it prints its checks and a result line.
if [ "$case_name" = example ]; then
  args=(127.0.0.1 "$TLS" "$D/ca.pem")
elif [ "$case_name" = bench ]; then
  args=("${QLS_BENCH_RECORDS:-200000}")
else
  args=("$case_name")
fi
set +e
timeout 100 "$client" "${args[@]}" > >(tee "$D/client.out") 2>&1
rc=$?
set -e
sleep 0.1 # let tee finish writing client.out
if [ "$rc" != 0 ]; then
  echo "client failed ($rc); rsyslogd said:"
  tail -20 "$D/rsyslogd.out" 2>/dev/null || true
  exit 1
fi

[ "$case_name" = bench ] && exit 0 # it prints its own results
python3 "$here/check.py" "$case_name" "$D"
