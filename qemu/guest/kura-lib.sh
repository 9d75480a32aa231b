# Shared by the guest's shell tools (busybox ash). Sourced, not run.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu

say() { echo "kura-guest: $*"; }

# The value of kernel argument $1 (key=value), or $2 when absent.
karg() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
  done
  echo "$2"
}

# Nothing here redirects to /dev/null before devtmpfs is there: the root may be read-only.
mount_basics() {
  [ -e /proc/self ] || mount -t proc proc /proc
  mounted() { grep -q " $1 " /proc/mounts; }
  mounted /sys || mount -t sysfs sysfs /sys
  mounted /dev || mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts && { mounted /dev/pts || mount -t devpts devpts /dev/pts; }
  mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
  mounted /tmp || mount -t tmpfs tmpfs /tmp
}

# Stop the machine now. `poweroff -f` skips init; the caller has already made its data durable.
halt_now() {
  echo "KURA-POWEROFF $1"
  poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger
}

# A block device node to appear (devtmpfs creates it when the driver finds the disk).
wait_block() {
  n=0
  while [ ! -b "$1" ]; do
    n=$((n + 1))
    [ $n -gt "${2:-300}" ] && return 1
    sleep 0.1
  done
}
