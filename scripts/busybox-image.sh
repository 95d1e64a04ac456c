#!/usr/bin/env bash
# Write DIR/busybox.tar: a docker-archive image tagged docker.io/library/busybox:latest and :1.36,
# built from Debian's busybox-static, because these machines reach no image registry.
# Every applet (httpd and wget included) is a symlink to /bin/busybox. `ctr images import` and
# the skiff agent (which imports DIR/agent/images/*.tar at start) both read this format.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
out=$1
bb=${BUSYBOX:-/bin/busybox}
# grep reads the whole list: with -q it may exit early and SIGPIPE fails the pipeline.
if ! "$bb" --list 2>/dev/null | grep -x httpd >/dev/null; then
  echo "$bb is not a full busybox (install busybox-static)" >&2
  exit 1
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/www}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
# Symlinks for every applet, at the paths busybox itself lists.
"$bb" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"

# One uncompressed layer, reproducible (sorted, fixed owner and mtime).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)

cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},
 "rootfs":{"type":"layers","diff_ids":["$diff_id"]},
 "history":[{"created_by":"scripts/busybox-image.sh from Debian busybox-static"}]}
EOF
cat >"$work/manifest.json" <<EOF
[{"Config":"config.json","RepoTags":["docker.io/library/busybox:latest","docker.io/library/busybox:1.36"],"Layers":["layer.tar"]}]
EOF
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" \
  -cf "$out/busybox.tar" manifest.json config.json layer.tar
echo "$out/busybox.tar"
