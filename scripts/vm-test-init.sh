#!/bin/sh
# /init of the vm-test guest (scripts/vm-test.sh packs it into each kernel's initramfs): mount
# what owod needs, run the checks (`owo-vmtest guest` prints one VMTEST line each), send the
# records and owod's log back over the console as gzip+base64 between marker lines, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
# A line of our own: the firmware's escape sequences end without a newline. Then the mark that
# the kernel booted and the guest runs (vm-test.sh boots a kernel again that never got here).
echo
echo "VMTEST-BOOTED $(uname -r)"
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Kernel messages (a module load taints the kernel, and says so) must not cut into our lines.
dmesg -n 1
hostname vmtest
ip link set lo up

/usr/bin/owo-vmtest guest

for file in /var/log/edr/alerts.jsonl /var/log/owod.log; do
	[ -f "$file" ] || continue
	echo "OWO-FILE-BEGIN ${file##*/}"
	gzip -c "$file" | base64
	echo "OWO-FILE-END ${file##*/}"
done
poweroff -f
