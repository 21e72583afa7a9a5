#!/usr/bin/env bash
# Podman 4.x with its CNI backend as a real client of nsnet's plugin mode.
# Run by tests/podman.rs inside the test's sandbox (fresh network namespace,
# private mounts, tmpfs /run and /dev/shm, overlays on /etc and /var/lib:
# podman's lock file, libcni's cache and podman's storage stay in it). This
# script adds a private pid namespace (conmon and the containers die with
# it), and uses a cgroup parent of its own, removed at the end: cgroupfs is
# not namespaced.
#   usage: run.sh NSNET_BINARY
set -euo pipefail
if [ -z "${NSNET_PODMAN_INNER:-}" ]; then
  export NSNET_PODMAN_INNER=1
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1
W=$(mktemp -d /run/nsnet-podman.XXXXXX)
CG=nsnet-podman-test-$$
cleanup() {
  podman rm -f -t 0 -a >/dev/null 2>&1 || true
  # Podman leaves its cgroup directories behind (also after rm).
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [ -d "$root/$CG" ] && find "$root/$CG" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
trap cleanup EXIT

mkdir -p "$W"/{plugins,cni-conf,ipam,tmp,volumes,storage}
ln -s "$NSNET" "$W/plugins/nsnet"

cat > "$W/containers.conf" <<CONF
[containers]
default_sysctls = ["net.ipv4.ping_group_range=0 0"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
runtime = "runc"
tmp_dir = "$W/tmp"
volume_path = "$W/volumes"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$W/plugins", "/usr/lib/cni"]
network_config_dir = "$W/cni-conf"
default_network = "nsnetpod"
CONF
cat > "$W/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "$W/storage/runroot"
graphroot = "$W/storage/root"
CONF
: > "$W/registries.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_REGISTRIES_CONF=$W/registries.conf

# A conflist written for the reference bridge plugin, with type nsnet.
cat > "$W/cni-conf/nsnetpod.conflist" <<CONF
{ "cniVersion": "1.0.0", "name": "nsnetpod",
  "plugins": [ { "type": "nsnet", "bridge": "nsnetpod0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": { "type": "nsnet", "ranges": [[{ "subnet": "10.66.0.0/24", "gateway": "10.66.0.1" }]],
                           "routes": [{ "dst": "0.0.0.0/0" }] },
                 "capabilities": { "portMappings": true, "ips": true, "mac": true } } ] }
CONF

rootfs() {
  local r=$W/rootfs-$1
  mkdir -p "$r"/{bin,etc,proc,sys,dev,tmp,run,root,www}
  cp /bin/busybox "$r/bin/busybox"
  for cmd in sh sleep ping ip httpd cat; do ln -s busybox "$r/bin/$cmd"; done
  echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
  echo "root:x:0:" > "$r/etc/group"
  : > "$r/etc/hosts"; : > "$r/etc/resolv.conf"; echo "$1" > "$r/etc/hostname"
  echo "served by $1" > "$r/www/index.html"
  echo "$r"
}

step() { echo "STEP $*"; }
# HTTP GET with bash alone (busybox-static's wget crashes on some hosts):
# prints the body.
http_get() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET /index.html HTTP/1.0\r\n\r\n" >&3 && cat <&3' _ "$1" "$2" |
    sed '1,/^\r\?$/d'
}
step podman-version "$(podman version --format '{{.Client.Version}}')"
podman network ls --format '{{.Name}} {{.Driver}}' | grep -q '^nsnetpod nsnet$'
step network-listed

podman run -d --cgroup-parent="/$CG" --name a --network nsnetpod --rootfs "$(rootfs a)" /bin/sleep 600 >/dev/null
podman run -d --cgroup-parent="/$CG" --name b --network nsnetpod -p 8080:80 --rootfs "$(rootfs b)" \
  /bin/httpd -f -p 80 -h /www >/dev/null
ipb=$(podman inspect -f '{{(index .NetworkSettings.Networks "nsnetpod").IPAddress}}' b)
step started "b=$ipb"
podman exec a ping -c 2 -W 2 "$ipb" >/dev/null
step ping-a-to-b
# The published port, from the host (the sandbox's root namespace).
got=$(http_get 127.0.0.1 8080)
[ "$got" = "served by b" ]
step published-port "$got"
[ "$(ip -o link show master nsnetpod0 | wc -l)" = 2 ]
"$NSNET" check >/dev/null
step check-clean

podman network reload b >/dev/null
got=$(http_get 127.0.0.1 8080)
[ "$got" = "served by b" ]
[ "$(ip -o link show master nsnetpod0 | wc -l)" = 2 ]
"$NSNET" check >/dev/null
step reload-no-leak

podman rm -f -t 0 a b >/dev/null
[ -z "$(ip -o link show master nsnetpod0)" ]
if grep -q 8080 <<<"$(nft list map inet nsnet ports4_any_dest)"; then echo "port 8080 left"; exit 1; fi
[ "$("$NSNET" --json network ls | tr -d ' \n' | grep -o '"attachments":\[\]' | wc -l)" = 1 ]
"$NSNET" check >/dev/null
step rm-no-leak
