#!/usr/bin/env bash
# End-to-end comparison of Reprise with restic and borg on the same data, in
# one run (issues #3 and #7): first backup, second backup after scattered
# edits, restore of the first snapshot; wall time and peak RSS of each, and
# the bytes each repository grew by. See bench/README.md.
#
#   bash bench/compare.sh [-r ROUNDS] [SIZE_MIB]     # default: 1 round, 1024 MiB
#
# The report (Markdown) goes to stdout, progress to stderr. Environment:
#   KEEP=1          keep the work directory (default: removed on exit)
#   BENCH_DIR=DIR   where to create the work directory (default: /tmp, or
#                   /var/tmp or $HOME when /tmp is a tmpfs)
#   REPRISE_KDF=low create Reprise's repository with --kdf-cost=low (default:
#                   argon2id calibrated to ~0.5 s, as restic calibrates scrypt)
#   RESTORE_DIR=DIR restore (and copy) into DIR instead of the work
#                   directory, e.g. /dev/shm to leave the disk's filesystem
#                   out of the restore times (default: the work directory)
#   GOMAXPROCS      passed through to reprise and restic (recorded)
set -euo pipefail

usage() {
	echo "usage: bash bench/compare.sh [-r ROUNDS] [SIZE_MIB]" >&2
	exit 2
}

rounds=1
while getopts "r:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
size=${1:-1024}
[[ $size =~ ^[1-9][0-9]*$ ]] || usage
[[ $rounds =~ ^[1-9][0-9]*$ ]] || usage

tools=(reprise restic borg)
# The rotation also times a plain copy of the original tree to where the
# restores go: the reference of what writing these files costs here.
order=("${tools[@]}" copy)
pass='compare-benchmark-passphrase'

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf '\ncompare.sh: FAILED: %s\n' "$*" >&2
	exit 1
}

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
[ -f "$root/examples/reprise/main.go" ] || die "cannot find the repository root from $bench"

for c in go restic borg /usr/bin/time sha256sum du diff env; do
	command -v "$c" >/dev/null || die "$c is not installed"
done

# ---- work directory, on local disk ----

fstype() { df --output=fstype "$1" | tail -n 1 | tr -d ' '; }
if [ -n "${BENCH_DIR:-}" ]; then
	base=$BENCH_DIR
	[ "$(fstype "$base")" != tmpfs ] || log "warning: BENCH_DIR=$base is a tmpfs (data in memory, not on disk)"
else
	base=
	for d in /tmp /var/tmp "$HOME"; do
		if [ -d "$d" ] && [ -w "$d" ] && [ "$(fstype "$d")" != tmpfs ]; then
			base=$d
			break
		fi
	done
	[ -n "$base" ] || die "/tmp, /var/tmp and \$HOME are all tmpfs or unwritable: set BENCH_DIR to a directory on disk"
fi
# Original, edited reference, working copy, restore, three repositories.
need=$((size * 6 + 512))
avail=$(($(df --output=avail -k "$base" | tail -n 1) / 1024))
[ "$avail" -ge "$need" ] || die "$base has $avail MiB free; about $need MiB are needed"
work=$(mktemp -d "$base/reprise-compare.XXXXXX")
rbase=$work
cleanup() {
	local rc=$?
	if [ "${KEEP:-}" = 1 ]; then
		log "KEEP=1: work directory kept: $work"
	else
		rm -rf "$work"
		[ "$rbase" = "$work" ] || rm -rf "$rbase"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log "work directory: $work ($(fstype "$base") on $(df --output=source "$base" | tail -n 1))"
if [ -n "${RESTORE_DIR:-}" ]; then
	ravail=$(($(df --output=avail -k "$RESTORE_DIR" | tail -n 1) / 1024))
	[ "$ravail" -ge $((size + 256)) ] || die "RESTORE_DIR=$RESTORE_DIR has $ravail MiB free; about $((size + 256)) MiB are needed"
	rbase=$(mktemp -d "$RESTORE_DIR/reprise-compare-restore.XXXXXX")
	log "restores go to $rbase ($(fstype "$rbase"))"
fi

bin=$work/bin
mkdir -p "$bin"
export REPRISE_PASSWORD=$pass RESTIC_PASSWORD=$pass BORG_PASSPHRASE=$pass
export RESTIC_CACHE_DIR=$work/restic-cache BORG_BASE_DIR=$work/borg-base
unset RESTIC_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND BORG_REPO BORG_PASSCOMMAND BORG_PASSPHRASE_FD REPRISE_KEY_URL

# ---- build and data ----

log "building reprise and the mix generator"
(cd "$root" && go build -o "$bin/reprise" ./examples/reprise) || die "go build ./examples/reprise"
(cd "$bench" && go build -o "$bin/mix" ./mix) || die "go build ./mix"

log "generating the $size MiB mix"
mixlog=$("$bin/mix" -size "$size" -out "$work/orig" 2>&1) || die "mix: $mixlog"
log "$mixlog"
cp -a "$work/orig" "$work/edited"
editlog=$("$bin/mix" -edit "$work/edited" 2>&1) || die "mix -edit: $editlog"
log "$editlog"
sync
databytes=$(find "$work/orig" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
nfiles=$(find "$work/orig" -type f | wc -l)
ndirs=$(find "$work/orig" -type d | wc -l)

# ---- helpers ----

# warm DIR: read every file, so that every tool starts from a warm page cache.
warm() { find "$1" -type f -exec cat {} + >/dev/null; }

# timed LOG CMD...: run CMD with its output in LOG; set T (wall seconds) and
# M (peak RSS, KiB). Pending writes are flushed first, outside the timing.
timed() {
	local out=$1
	shift
	sync
	if ! /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >"$out" 2>&1; then
		tail -n 20 "$out" >&2
		die "$* (exit status above; log $out)"
	fi
	read -r T M <"$work/time.out"
}

repo_bytes() { du -sb "$1" | cut -f1; }

# Per tool, each with its log file last: init REPO; backup REPO SRC NAME LOG
# (timed; sets SNAP, and ADDED: the bytes the tool says it added); restore
# REPO SNAP DST LOG (timed); list REPO LOG (timed).
reprise_init() {
	local kdf=()
	[ "${REPRISE_KDF:-}" != low ] || kdf=(--kdf-cost=low)
	"$bin/reprise" init --repo "$1" "${kdf[@]}"
}
reprise_backup() {
	timed "$4" "$bin/reprise" backup --repo "$1" --tenant bench --json "$2"
	SNAP=$(sed -n 's/^ *"snapshot": "\([0-9a-f]*\)".*/\1/p' "$4")
	ADDED=$(sed -n 's/^ *"bytes_added": \([0-9]*\).*/\1/p' "$4")
}
reprise_restore() { timed "$4" "$bin/reprise" restore --repo "$1" --tenant bench "$2" --target "$3"; }
reprise_list() { timed "$2" "$bin/reprise" snapshots --repo "$1" --tenant bench; }

restic_init() { restic init -r "$1" && restic -r "$1" cat config; }
restic_backup() {
	# From inside SRC, so that the snapshot holds its contents at the root
	# (the parent snapshot is still found by the absolute path).
	timed "$4" env -C "$2" restic -r "$1" backup --json .
	local sum
	sum=$(grep '"message_type":"summary"' "$4" | tail -n 1)
	SNAP=$(sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' <<<"$sum")
	ADDED=$(sed -n 's/.*"data_added":\([0-9]*\).*/\1/p' <<<"$sum")
}
restic_restore() { timed "$4" restic -r "$1" restore "$2" --target "$3"; }
restic_list() { timed "$2" restic -r "$1" snapshots; }

borg_init() { borg init -e repokey-blake2 "$1"; }
borg_backup() {
	timed "$4" env -C "$2" borg create --compression zstd,1 --stats "$1::$3" .
	SNAP=$3
	ADDED=$(awk '/^This archive:/ {v = $(NF-1); u = $NF} END {print v, u}' "$4")
}
borg_restore() { timed "$4" env -C "$3" borg extract "$1::$2"; }
borg_list() { timed "$2" borg list "$1"; }

results=$work/results.tsv
: >"$results"

# run_tool TOOL ROUND: one full measurement with a fresh repository; appends
# a line to $results.
run_tool() {
	local tool=$1 round=$2
	local d=$work/run/$tool rdir=$rbase/restore-$tool repo snap1 t1 m1 s1 t2 m2 s2 t3 m3 added2 topen
	rm -rf "$d" "$rdir" "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR"
	mkdir -p "$d/logs" "$rdir"
	repo=$d/repo
	cp -a "$work/orig" "$d/src"
	"${tool}_init" "$repo" >"$d/logs/init" 2>&1 || {
		cat "$d/logs/init" >&2
		die "$tool init"
	}

	log "round $round, $tool: first backup"
	sync
	warm "$d/src"
	"${tool}_backup" "$repo" "$d/src" first "$d/logs/backup1"
	t1=$T m1=$M snap1=$SNAP
	[ -n "$snap1" ] || die "$tool: no snapshot ID in $d/logs/backup1"
	s1=$(repo_bytes "$repo")

	log "round $round, $tool: second backup after the edits"
	"$bin/mix" -edit "$d/src" 2>"$d/logs/edit" || die "mix -edit $d/src: $(cat "$d/logs/edit")"
	diff -rq "$work/edited" "$d/src" >"$d/logs/edit-diff" 2>&1 ||
		die "$tool: the edited working copy differs from the edited reference: $(head -n 5 "$d/logs/edit-diff")"
	sync
	warm "$d/src"
	"${tool}_backup" "$repo" "$d/src" second "$d/logs/backup2"
	t2=$T m2=$M added2=$ADDED
	s2=$(repo_bytes "$repo")

	# Opening the repository and listing its snapshots: the fixed cost
	# (KDF, index) that every command above paid once.
	"${tool}_list" "$repo" "$d/logs/list"
	topen=$T

	log "round $round, $tool: restore of the first snapshot ($snap1)"
	sync
	warm "$repo"
	"${tool}_restore" "$repo" "$snap1" "$rdir" "$d/logs/restore"
	t3=$T m3=$M
	if ! diff -rq "$work/orig" "$rdir" >"$d/logs/restore-diff" 2>&1; then
		echo "RESTORE MISMATCH: $tool, round $round: the restored tree differs from the original:" >&2
		head -n 20 "$d/logs/restore-diff" >&2
		die "$tool restored different data (rerun with KEEP=1 to inspect $rdir)"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$tool" \
		"$t1" "$m1" "$s1" "$t2" "$m2" "$((s2 - s1))" "$t3" "$m3" "$topen" "${added2// /_}" >>"$results"
	log "round $round, $tool: backup ${t1}s ${m1}KiB, repo $s1 B; 2nd backup ${t2}s, +$((s2 - s1)) B; restore ${t3}s ${m3}KiB, verified"
	if [ "${KEEP:-}" = 1 ]; then
		mv "$d" "$work/run/$tool-round$round"
		mv "$rdir" "$rbase/restore-$tool-round$round"
	else
		rm -rf "$d" "$rdir"
	fi
	settle
}

# settle: let the filesystem finish with what was just written and deleted
# (writeback, and discards on a filesystem mounted with -o discard), so
# that it does not slow down the next measurement.
settle() {
	sync
	sleep "${SETTLE:-5}"
}

copies=$work/copies.tsv
: >"$copies"

# run_copy ROUND: copy the original tree, warm, to where the restores go,
# with one cp -a per top-level entry, all at once (the mix has three, for
# two or more cores), timed like a restore and checked like one; appends
# round, seconds and peak RSS (of the largest cp) to $copies. A restore
# writes these same files, so this is about the least any tool's restore
# can cost here: reading the data back from the page cache, rather than
# decrypting it, is cheap.
run_copy() {
	local round=$1 d=$work/run/copy rdir=$rbase/restore-copy
	rm -rf "$d" "$rdir"
	mkdir -p "$d/logs" "$rdir"
	log "round $round, copy: cp -a of the original tree, one per top-level entry in parallel"
	sync
	warm "$work/orig"
	timed "$d/logs/copy" bash -c 'shopt -s dotglob
pids=()
for e in "$1"/*; do cp -a "$e" "$2"/ & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || exit 1; done' copy "$work/orig" "$rdir"
	diff -rq "$work/orig" "$rdir" >"$d/logs/copy-diff" 2>&1 || die "the copy differs from the original: $(head -n 5 "$d/logs/copy-diff")"
	printf '%s\t%s\t%s\n' "$round" "$T" "$M" >>"$copies"
	log "round $round, copy: ${T}s, verified"
	rm -rf "$d" "$rdir"
	settle
}

# The order of the tools rotates from round to round, so that none is
# always the one measured right after another's cleanup.
for ((round = 1; round <= rounds; round++)); do
	for ((i = 0; i < ${#order[@]}; i++)); do
		tool=${order[(i + round - 1) % ${#order[@]}]}
		if [ "$tool" = copy ]; then
			run_copy "$round"
		else
			run_tool "$tool" "$round"
		fi
	done
done

# ---- report ----

# med: the median of the numbers on stdin, one per line.
med() {
	sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# median TOOL COLUMN: median over the rounds of a column of $results.
median() { awk -F'\t' -v t="$1" -v c="$2" '$2 == t {print $c}' "$results" | med; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }

declare -A T1 M1 S1 T2 M2 NEW T3 M3 TOPEN
for tool in "${tools[@]}"; do
	T1[$tool]=$(median "$tool" 3)
	M1[$tool]=$(median "$tool" 4)
	S1[$tool]=$(median "$tool" 5)
	T2[$tool]=$(median "$tool" 6)
	M2[$tool]=$(median "$tool" 7)
	NEW[$tool]=$(median "$tool" 8)
	T3[$tool]=$(median "$tool" 9)
	M3[$tool]=$(median "$tool" 10)
	TOPEN[$tool]=$(median "$tool" 11)
done
TCOPY=$(cut -f2 "$copies" | med)
MCOPY=$(cut -f3 "$copies" | med)

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
[ "$dirty" = 0 ] || rev="$rev (+$dirty modified files)"
what="median of $rounds rounds"
[ "$rounds" -gt 1 ] || what="1 round"
kdfdesc="argon2id calibrated to ~0.5 s, 64 MiB (default)"
[ "${REPRISE_KDF:-}" != low ] || kdfdesc="argon2id --kdf-cost=low (1 pass, 64 KiB: no KDF cost)"

cat <<EOF
## End-to-end comparison: $size MiB mix, encrypted local repositories

- $(date -u '+%Y-%m-%d %H:%M UTC'); $(uname -srm); $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), nproc $(nproc), GOMAXPROCS ${GOMAXPROCS:-unset}, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)
- work directory on $(fstype "$base") ($base); $what, tools interleaved in every round in rotating order, fresh repositories every round, sync and a 5 s pause after each tool
- reprise $rev, $(go version | cut -d' ' -f3); $(restic version | cut -d' ' -f1-2) (repository v2, compression auto); $(borg --version) (repokey-blake2, zstd,1)
- data: $databytes bytes, $nfiles files, $ndirs dirs: ${mixlog#mix: wrote * in * }
- edits: ${editlog#mix: edited * in * }
- passphrase KDF: reprise $kdfdesc; restic scrypt calibrated by restic init to ~0.5 s (≤60 MiB); borg PBKDF2-SHA256, 100000 iterations

| tool | first backup s | MB/s | peak RSS MiB | repo MiB | 2nd backup s | new bytes MiB | restore s | restore MB/s | restore peak RSS MiB |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for tool in "${tools[@]}"; do
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$tool" \
		"$(calc %.2f "${T1[$tool]}")" "$(calc %.0f "$databytes / ${T1[$tool]} / 1e6")" \
		"$(calc %.0f "(${M1[$tool]} > ${M2[$tool]} ? ${M1[$tool]} : ${M2[$tool]}) / 1024")" \
		"$(calc %.1f "${S1[$tool]} / 1048576")" "$(calc %.2f "${T2[$tool]}")" \
		"$(calc %.2f "${NEW[$tool]} / 1048576")" "$(calc %.2f "${T3[$tool]}")" \
		"$(calc %.0f "$databytes / ${T3[$tool]} / 1e6")" "$(calc %.0f "${M3[$tool]} / 1024")"
done
printf '| copy (cp -a, reference) | – | – | – | – | – | – | %s | %s | %s |\n' "$(calc %.2f "$TCOPY")" \
	"$(calc %.0f "$databytes / $TCOPY / 1e6")" "$(calc %.0f "$MCOPY / 1024")"

mark() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }
peer_t1=$(calc %s "${T1[restic]} < ${T1[borg]} ? ${T1[restic]} : ${T1[borg]}")
peer_t3=$(calc %s "${T3[restic]} < ${T3[borg]} ? ${T3[restic]} : ${T3[borg]}")
bk_speed=$(calc %.2f "$peer_t1 / ${T1[reprise]}")
rs_speed=$(calc %.2f "$peer_t3 / ${T3[reprise]}")
cp_speed=$(calc %.2f "$peer_t3 / $TCOPY")
bk_rss=$(calc %.0f "(${M1[reprise]} > ${M2[reprise]} ? ${M1[reprise]} : ${M2[reprise]}) / 1024")
rs_rss=$(calc %.0f "${M3[reprise]} / 1024")
new_ratio=$(calc %.2f "${NEW[reprise]} / (${NEW[restic]} > 0 ? ${NEW[restic]} : 1)")
cat <<EOF

| target | measured | |
|---|---:|---|
| #3 first backup: fastest peer time / reprise time ≥ 2 | ${bk_speed}× | $(mark "$bk_speed >= 2") |
| #3 backup peak RSS (first and second) ≤ 256 MiB | $bk_rss MiB | $(mark "$bk_rss <= 256") |
| #3 new bytes after the edits: reprise / restic ≤ 1 | $new_ratio | $(mark "$new_ratio <= 1") |
| #7 restore: fastest peer time / reprise time ≥ 3 | ${rs_speed}× | $(mark "$rs_speed >= 3") |
| #7 restore peak RSS ≤ 256 MiB | $rs_rss MiB | $(mark "$rs_rss <= 256") |
| (reference) fastest peer restore time / copy time | ${cp_speed}× | |

Notes:
- MB/s = $databytes bytes / wall seconds / 10^6; peak RSS is GNU time's maximum resident set size. Every restore was
  compared with the original tree (diff -r) and was identical.
- copy: the original tree, warm in the page cache, copied to where the restores go (${rbase/#$work/the work directory}, $(fstype "$rbase"))
  by one \`cp -a\` per top-level entry, all at once, timed and checked like a restore (peak RSS: the largest cp). It
  writes the same files as a restore and decrypts nothing, so about the fastest any restore can be here: a restore
  ${cp_speed}× faster than the fastest peer would be as fast as this copy.
- new bytes = growth of the repository directory (du -sb) over the second backup, metadata included. What the tools
  themselves report as added by it (reprise bytes_added, restic data_added, borg deduplicated size of the archive):
  $(for tool in "${tools[@]}"; do printf '%s %s; ' "$tool" "$(awk -F'\t' -v t="$tool" '$2 == t {printf "%s%s", sep, $12; sep = ", "}' "$results" | tr _ ' ')"; done | sed 's/; $/./')
- opening the repository and listing its snapshots (the fixed cost every timed command pays once: KDF, index):
  $(for tool in "${tools[@]}"; do printf '%s %s s; ' "$tool" "${TOPEN[$tool]}"; done | sed 's/; $/./')
EOF
if [ "$rounds" -gt 1 ]; then
	echo
	echo "Per round (round, tool, backup s, RSS KiB, repo B, 2nd backup s, RSS KiB, new B, restore s, RSS KiB, open s, added):"
	echo
	echo '```'
	cat "$results"
	echo '```'
fi
