#!/usr/bin/env bash
# payload: push and pull of a demo-sized output set (200 MiB root disk,
# 270 MiB in all) to Debian's docker-registry on a loopback port, and
# install into a fresh root. Targets: push < 3 s, pull < 3 s, install < 1 s.
#
# References timed in the same run: sha256sum over the files (the least a
# push must do: every layer is addressed by its digest) and curl uploading
# the root disk as one blob (monolithic PUT, which skips our hashing); cp
# of the output directory (the least a pull or an install must write).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v docker-registry >/dev/null || { echo "docker-registry not installed (make deps)"; exit 1; }
[ -x bin/imagebuilder ] || make -s build

tmp=$(mktemp -d)
reg_pid=
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

go run ./scripts/bench/payloadgen "$tmp/gen/out"
out=$tmp/gen/out
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $tmp/storage
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
cat "$out"/* >/dev/null # page cache warm for every contender

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
rss() { awk '/Maximum resident/ {print int($NF/1024)}' "$1"; }

t0=$(now); sha256sum "$out"/* >/dev/null; t1=$(now); sha_ms=$(ms "$t0" "$t1")
t0=$(now)
loc=$(curl -fsS -X POST -D - -o /dev/null "http://127.0.0.1:$port/v2/ref/blobs/uploads/" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
sum=$(sha256sum "$out/rootfs.img" | cut -d' ' -f1)
case "$loc" in *\?*) sep='&';; *) sep='?';; esac
curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$out/rootfs.img" "$loc${sep}digest=sha256:$sum" -o /dev/null
t1=$(now); curl_ms=$(ms "$t0" "$t1")

ref=127.0.0.1:$port/podvm/demo:bench
t0=$(now); /usr/bin/time -v bin/imagebuilder push "$out" "$ref" >"$tmp/push.out" 2>"$tmp/push.time"; t1=$(now); push_ms=$(ms "$t0" "$t1")
digest=$(awk '{print $NF}' "$tmp/push.out")
# The output set is synthetic (random bytes where the disk and the IGVM
# file would be), so pull's verify step cannot pass: it is left out here
# and timed on a real build by verify.sh.
t0=$(now); /usr/bin/time -v bin/imagebuilder pull --no-verify "127.0.0.1:$port/podvm/demo@$digest" -o "$tmp/pulled" >/dev/null 2>"$tmp/pull.time" || { cat "$tmp/pull.time"; exit 1; }; t1=$(now); pull_ms=$(ms "$t0" "$t1")
t0=$(now); cp -r "$out" "$tmp/cp"; sync -f "$tmp/cp" 2>/dev/null || true; t1=$(now); cp_ms=$(ms "$t0" "$t1")
mkdir "$tmp/root"
t0=$(now); /usr/bin/time -v bin/imagebuilder install "$out" --root "$tmp/root" >/dev/null 2>"$tmp/install.time"; t1=$(now); install_ms=$(ms "$t0" "$t1")
t0=$(now); bin/imagebuilder install "$out" --root "$tmp/root" >/dev/null; t1=$(now); again_ms=$(ms "$t0" "$t1")
cmp -s "$out/rootfs.img" "$tmp/pulled/rootfs.img" || { echo "pulled rootfs.img differs"; exit 1; }

size=$(du -sm "$out" | cut -f1)
ok() { [ "$1" -lt "$2" ] && echo ok || echo MISSED; }
echo "output set: $size MiB in $(ls "$out" | wc -l) files"
echo "push:    $push_ms ms, peak RSS $(rss "$tmp/push.time") MiB (target < 3000 ms: $(ok "$push_ms" 3000))"
echo "  sha256sum of the files (reference): $sha_ms ms; curl PUT of the root disk alone: $curl_ms ms; ratio push/(sha256sum+curl) = $(awk -v a="$push_ms" -v b="$((sha_ms + curl_ms))" 'BEGIN {printf "%.2f", a / b}')"
echo "pull:    $pull_ms ms, peak RSS $(rss "$tmp/pull.time") MiB (target < 3000 ms: $(ok "$pull_ms" 3000))"
echo "install: $install_ms ms, peak RSS $(rss "$tmp/install.time") MiB (target < 1000 ms: $(ok "$install_ms" 1000)); again (nothing to do): $again_ms ms"
echo "  cp -r of the output set (reference): $cp_ms ms; ratio install/cp = $(awk -v a="$install_ms" -v b="$cp_ms" 'BEGIN {printf "%.2f", a / b}')"
[ "$push_ms" -lt 3000 ] && [ "$pull_ms" -lt 3000 ] && [ "$install_ms" -lt 1000 ]
