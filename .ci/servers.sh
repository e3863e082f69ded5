# shellcheck shell=bash
# .ci/servers.sh — install and start the test servers of Reprise's cloud
# storage drivers, on 127.0.0.1 only. Meant to be sourced by bash:
#
#   source .ci/servers.sh || exit 1
#   trap reprise_stop_servers EXIT
#   go test ./storage/s3store/ ./storage/blobstore/
#
# Servers (pinned versions; installs are skipped when the right version is
# already there):
#   minio    go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
#   azurite  npm install -g azurite@3.37.0 (azurite-blob)
#   fakegcs  go install github.com/fsouza/fake-gcs-server@v1.56.1
#
# The installs run in parallel. Measured cold, with private caches, on the
# 2-core dev machine shared with other builds (load average 1 to 14, so the
# numbers are noisy): minio 20 min in parallel with the others under heavy
# load (2-5.5 min alone on a quiet machine); fakegcs 3-11 min alone, 6-8
# min in parallel; azurite 46-69 s alone, 105-165 s in parallel. Runs of
# fakegcs+azurite took 371-496 s in parallel and 215-724 s one after the
# other: the load of the other builds swamped the difference. Parallel is
# kept because its wall time is the slowest install plus contention, while
# npm (network-bound) and each Go build's module downloads overlap the
# other Go build's compiling; one after the other it is always the sum.
# Start-up, all three launched at once: ready within 3-13 s; the up-to-date
# check of installed binaries takes 2-6 s.
#
# It exports what the integration tests read:
#   REPRISE_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
#   REPRISE_TEST_AZURITE=1, AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY,
#     AZURE_STORAGE_DOMAIN, AZURE_STORAGE_PROTOCOL, AZURE_STORAGE_IS_LOCAL_EMULATOR
#   REPRISE_TEST_GCS_EMULATOR=1, STORAGE_EMULATOR_HOST (host:port, no scheme)
# and defines reprise_stop_servers, which stops them by recorded PID
# (SIGTERM, then SIGKILL after a grace) and removes their data.
#
# Knobs (environment, all optional):
#   REPRISE_SERVERS          servers to run (default "minio azurite fakegcs")
#   REPRISE_SERVERS_DIR      pidfiles, logs, data (default: a fresh mktemp -d)
#   REPRISE_MINIO_PORT       first port tried for MinIO (9000; +1 for its console)
#   REPRISE_AZURITE_PORT     first port tried for Azurite (10000)
#   REPRISE_FAKEGCS_PORT     first port tried for fake-gcs-server (4443)
#   REPRISE_SERVERS_TIMEOUT  readiness timeout per server, seconds (90)
#   REPRISE_NPM_PREFIX       npm prefix for Azurite (default: npm's global
#                            prefix if writable, else ~/.cache/reprise/npm)
# A port in use (another job's server) is skipped for the next free one, so
# the tests never talk to a server this script did not start.
#
# The script does not change the caller's shell options, and its servers
# are disowned so that a bare `wait` in the caller does not block on them.

REPRISE_MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
REPRISE_FAKEGCS_VERSION=v1.56.1
REPRISE_AZURITE_VERSION=3.37.0
# Azurite's well-known development account (public, documented by Microsoft).
REPRISE_AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

_reprise_log() { printf 'servers.sh: %s\n' "$*" >&2; }

# _reprise_now: seconds since the epoch with milliseconds.
_reprise_now() { printf '%s' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
_reprise_since() { awk -v a="$1" -v b="$(_reprise_now)" 'BEGIN { printf "%.1f", b - a }'; }

_reprise_gobin() {
  local d
  d=$(go env GOBIN) || return 1
  [[ -n $d ]] || d="$(go env GOPATH | cut -d: -f1)/bin"
  printf '%s' "$d"
}

# _reprise_have_go_tool BIN MODULE VERSION: BIN exists and was built from
# MODULE at VERSION.
_reprise_have_go_tool() {
  [[ -x $1 ]] && go version -m "$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"
}

# _reprise_npm_prefix: where npm installs Azurite: npm's global prefix
# when writable (root in CI), else a per-user directory.
_reprise_npm_prefix() {
  local p
  p=${REPRISE_NPM_PREFIX:-$(npm config get prefix 2>/dev/null)}
  if [[ -z $p || ! -w $p ]]; then
    p="${XDG_CACHE_HOME:-$HOME/.cache}/reprise/npm"
    mkdir -p "$p"
  fi
  printf '%s' "$p"
}

# _reprise_azurite_bin: the azurite-blob to run, or nothing.
_reprise_azurite_bin() {
  local p
  p="$(_reprise_npm_prefix)/bin/azurite-blob"
  if [[ -x $p ]]; then printf '%s' "$p"; else command -v azurite-blob; fi
}

# _reprise_install NAME: install one server unless present; logs to
# $REPRISE_SERVERS_DIR/install-NAME.log and prints its time.
_reprise_install() {
  local name=$1 t0 log="$REPRISE_SERVERS_DIR/install-$1.log" gobin rc=0
  t0=$(_reprise_now)
  gobin=$(_reprise_gobin) || return 1
  case $name in
  minio)
    if _reprise_have_go_tool "$gobin/minio" github.com/minio/minio "$REPRISE_MINIO_VERSION"; then
      _reprise_log "minio: already installed ($gobin/minio)"; return 0
    fi
    go install "github.com/minio/minio@$REPRISE_MINIO_VERSION" >"$log" 2>&1 || rc=$? ;;
  fakegcs)
    if _reprise_have_go_tool "$gobin/fake-gcs-server" github.com/fsouza/fake-gcs-server "$REPRISE_FAKEGCS_VERSION"; then
      _reprise_log "fakegcs: already installed ($gobin/fake-gcs-server)"; return 0
    fi
    go install "github.com/fsouza/fake-gcs-server@$REPRISE_FAKEGCS_VERSION" >"$log" 2>&1 || rc=$? ;;
  azurite)
    local bin
    bin=$(_reprise_azurite_bin)
    if [[ -n $bin ]] && [[ $("$bin" --version 2>/dev/null) == "$REPRISE_AZURITE_VERSION" ]]; then
      _reprise_log "azurite: already installed ($bin)"; return 0
    fi
    npm install -g --prefix "$(_reprise_npm_prefix)" --no-audit --no-fund \
      "azurite@$REPRISE_AZURITE_VERSION" >"$log" 2>&1 || rc=$? ;;
  *)
    _reprise_log "unknown server $name"; return 1 ;;
  esac
  if ((rc != 0)); then
    _reprise_log "$name: install FAILED after $(_reprise_since "$t0")s (exit $rc); last lines of $log:"
    tail -n 20 "$log" >&2
    return 1
  fi
  _reprise_log "$name: installed in $(_reprise_since "$t0")s"
}

# _reprise_port_free PORT: nothing listens on 127.0.0.1:PORT.
_reprise_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _reprise_free_port FIRST [COUNT]: the first port from FIRST on such that
# COUNT consecutive ports are free.
_reprise_free_port() {
  local p=$1 n=${2:-1} i ok
  for ((; p < $1 + 200; p++)); do
    ok=1
    for ((i = 0; i < n; i++)); do _reprise_port_free $((p + i)) || { ok=0; break; }; done
    ((ok)) && { printf '%s' "$p"; return 0; }
  done
  return 1
}

# _reprise_wait NAME PID CMD...: wait until CMD succeeds, while PID lives.
_reprise_wait() {
  local name=$1 pid=$2 limit=${REPRISE_SERVERS_TIMEOUT:-90} t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      _reprise_log "$name exited before answering; last lines of its log:"
      tail -n 20 "$REPRISE_SERVERS_DIR/$name.log" >&2
      return 1
    fi
    if ((SECONDS - t0 >= limit)); then
      _reprise_log "$name not ready after ${limit}s; last lines of its log:"
      tail -n 20 "$REPRISE_SERVERS_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

# _reprise_launch NAME: start one server in the background, recording its
# PID and port (in _reprise_port[NAME]).
_reprise_launch() {
  local name=$1 pid port dir="$REPRISE_SERVERS_DIR" gobin
  gobin=$(_reprise_gobin) || return 1
  case $name in
  minio)
    port=$(_reprise_free_port "${REPRISE_MINIO_PORT:-9000}" 2) || { _reprise_log "minio: no free port"; return 1; }
    mkdir -p "$dir/minio-data" || return 1
    MINIO_ROOT_USER=reprise MINIO_ROOT_PASSWORD=reprise-secret MINIO_UPDATE=off MINIO_BROWSER=off \
      "$gobin/minio" server "$dir/minio-data" --quiet \
      --address "127.0.0.1:$port" --console-address "127.0.0.1:$((port + 1))" \
      >"$dir/minio.log" 2>&1 &
    pid=$! ;;
  azurite)
    port=$(_reprise_free_port "${REPRISE_AZURITE_PORT:-10000}") || { _reprise_log "azurite: no free port"; return 1; }
    mkdir -p "$dir/azurite-data" || return 1
    # --skipApiVersionCheck: the Azure SDK sends a newer x-ms-version than
    # Azurite 3.37 knows. --location keeps its files in our directory.
    "$(_reprise_azurite_bin)" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/azurite-data" \
      --skipApiVersionCheck --silent >"$dir/azurite.log" 2>&1 &
    pid=$! ;;
  fakegcs)
    port=$(_reprise_free_port "${REPRISE_FAKEGCS_PORT:-4443}") || { _reprise_log "fakegcs: no free port"; return 1; }
    "$gobin/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
      -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" -log-level warn \
      >"$dir/fakegcs.log" 2>&1 &
    pid=$! ;;
  *)
    _reprise_log "unknown server $name"; return 1 ;;
  esac
  echo "$pid" >"$dir/$name.pid"
  disown "$pid" 2>/dev/null
  _reprise_port[$name]=$port
}

# _reprise_ready NAME: wait until a launched server answers, then export
# the variables the tests read.
_reprise_ready() {
  local name=$1 port=${_reprise_port[$1]} pid
  pid=$(<"$REPRISE_SERVERS_DIR/$name.pid")
  case $name in
  minio)
    _reprise_wait minio "$pid" curl -sf "http://127.0.0.1:$port/minio/health/ready" || return 1
    export REPRISE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=reprise AWS_SECRET_ACCESS_KEY=reprise-secret AWS_REGION=us-east-1
    ;;
  azurite)
    _reprise_wait azurite "$pid" curl -s -o /dev/null "http://127.0.0.1:$port/devstoreaccount1?comp=list" || return 1
    export REPRISE_TEST_AZURITE=1
    export AZURE_STORAGE_ACCOUNT=devstoreaccount1 AZURE_STORAGE_KEY="$REPRISE_AZURITE_KEY"
    export AZURE_STORAGE_DOMAIN="127.0.0.1:$port" AZURE_STORAGE_PROTOCOL=http AZURE_STORAGE_IS_LOCAL_EMULATOR=true
    ;;
  fakegcs)
    _reprise_wait fakegcs "$pid" curl -sf "http://127.0.0.1:$port/storage/v1/b" || return 1
    export REPRISE_TEST_GCS_EMULATOR=1
    export STORAGE_EMULATOR_HOST="127.0.0.1:$port" # no http:// (gocloud adds it)
    ;;
  esac
  _reprise_log "$name: ready (pid $pid, 127.0.0.1:$port) $(_reprise_since "$_reprise_t_start")s after launch"
}

# reprise_stop_servers: stop every server this script started, by its
# recorded PID: SIGTERM, then SIGKILL after a grace (Azurite lingers 10-20 s
# after SIGTERM, so its grace is short). Safe to call more than once.
reprise_stop_servers() {
  local dir=${REPRISE_SERVERS_DIR:-} f pid name grace i
  [[ -n $dir && -d $dir ]] || return 0
  for f in "$dir"/*.pid; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pid)
    pid=$(<"$f")
    grace=10
    [[ $name == azurite ]] && grace=2
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        _reprise_log "$name (pid $pid): killed after ${grace}s"
      else
        _reprise_log "$name (pid $pid): stopped"
      fi
    fi
    rm -f "$f"
  done
  if [[ ${_REPRISE_OWN_DIR:-} == 1 ]]; then
    rm -rf "$dir"
  fi
}

# reprise_start_servers: install what is missing (in parallel), then start
# the servers. On failure it stops what it started and returns 1.
reprise_start_servers() {
  local servers=${REPRISE_SERVERS:-minio azurite fakegcs} s t0 rc=0
  local -A pids=()
  command -v curl >/dev/null || { _reprise_log "curl is required"; return 1; }
  if [[ -z ${REPRISE_SERVERS_DIR:-} ]]; then
    REPRISE_SERVERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/reprise-servers.XXXXXX") || return 1
    _REPRISE_OWN_DIR=1
  fi
  export REPRISE_SERVERS_DIR
  mkdir -p "$REPRISE_SERVERS_DIR" || return 1

  t0=$(_reprise_now)
  for s in $servers; do
    _reprise_install "$s" &
    pids[$s]=$!
  done
  for s in $servers; do
    wait "${pids[$s]}" || rc=1
  done
  _reprise_log "installs done in $(_reprise_since "$t0")s"
  ((rc == 0)) || return 1

  # Launch all, then wait for each: their start-ups overlap.
  declare -gA _reprise_port=()
  _reprise_t_start=$(_reprise_now)
  for s in $servers; do
    _reprise_launch "$s" || { reprise_stop_servers; return 1; }
  done
  for s in $servers; do
    _reprise_ready "$s" || { reprise_stop_servers; return 1; }
  done
  _reprise_log "servers ready; data and logs in $REPRISE_SERVERS_DIR"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "usage: source ${BASH_SOURCE[0]} (it exports variables and defines reprise_stop_servers)" >&2
  exit 2
fi
reprise_start_servers || return 1
