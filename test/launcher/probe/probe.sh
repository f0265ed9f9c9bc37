#!/bin/sh
# What a container may do, seen from inside (busybox sh). One line a row:
#
#     ROW <TAB> denied|allowed|n/a|info <TAB> detail
#
# denied: the container cannot (read-only, masked, refused); allowed: it can; n/a: the thing
# does not exist in this runtime (the reason follows); info: a value for the test to compare
# (capability sets, uid_map, mount table), never a verdict.
#
# Non-destructive: files are opened for append and closed without writing, masked files are read
# one byte at most, and the syscall rows come from /probe/probe (probe.c), whose arguments make
# every call a no-op or an argument error. Every row is printed, whatever is missing.
# test/launcher/probe.test.ts runs this under `layerfs run` and under podman and compares.

row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3"; }

# The errno text at the end of a busybox error message ("sh: can't create F: Read-only file system").
reason() { sed -n '$s/.*: //p'; }

is_denial() {
  case "$1" in
  'Read-only file system' | 'Permission denied' | 'Operation not permitted' | 'Function not implemented') return 0 ;;
  esac
  return 1
}

# The mountinfo line of the mount that holds PATH (the longest mount point that is PATH or a
# parent of it; the last one mounted there when several are stacked).
mount_of() {
  awk -v p="$1" '
    { mp = $5; gsub(/\\040/, " ", mp)
      if (mp == p || mp == "/" || index(p, mp "/") == 1) {
        if (length(mp) >= best) { best = length(mp); line = $0 }
      } }
    END { print line }' /proc/self/mountinfo
}

# The mount point and whether it is mounted read-only (field 6, the per-mount options).
mount_ro() {
  set -- $(mount_of "$1")
  case ",$6," in *,ro,*) echo "ro $5" ;; *) echo "rw $5" ;; esac
}

# Opening FILE for append, without writing: "ok" or the errno text.
try_append() {
  err=$( { : >>"$1"; } 2>&1) && { echo ok; return; }
  printf '%s\n' "$err" | reason
}

# ro ROW PATH [FILE...]: PATH must be read-only. denied when the mount that holds it is
# read-only, or opening a file in it for append fails with EROFS/EACCES/EPERM.
ro() {
  name=$1 p=$2
  shift 2
  if [ ! -e "$p" ]; then row "$name" n/a "$p absent"; return; fi
  set -- "$@" "$p"
  m=$(mount_ro "$p")
  if [ "${m%% *}" = ro ]; then row "$name" denied "mounted read-only at ${m#* }"; return; fi
  f=
  for c in "$@"; do
    if [ -f "$c" ]; then f=$c; break; fi
    if [ -d "$c" ]; then
      f=$(find "$c" -type f 2>/dev/null | head -n 1)
      [ -n "$f" ] && break
    fi
  done
  if [ -z "$f" ]; then row "$name" allowed "mount ${m#* } is read-write (no file in it to try)"; return; fi
  r=$(try_append "$f")
  if [ "$r" = ok ]; then row "$name" allowed "opened $f for append (mount ${m#* } read-write)"
  elif is_denial "$r"; then row "$name" denied "open $f for append: $r"
  else row "$name" allowed "open $f for append: $r (not a denial)"
  fi
}

# mounted_at PATH: the fstype and root of a mount at exactly PATH, if there is one.
mounted_at() {
  awk -v p="$1" '{ mp = $5; gsub(/\\040/, " ", mp); if (mp == p) { for (i = 7; $i != "-"; i++); r = $(i + 1) " root=" $4 } } END { print r }' /proc/self/mountinfo
}

# masked_file ROW FILE: reading one byte gives nothing (masked with /dev/null) or fails.
masked_file() {
  name=$1 f=$2
  if [ ! -e "$f" ]; then row "$name" n/a "$f absent"; return; fi
  over=$(mounted_at "$f")
  # head's error (if any) comes first, wc's count last.
  res=$( (head -c 1 "$f" | wc -c) 2>&1)
  n=$(printf '%s\n' "$res" | tail -n 1 | tr -d ' ')
  e=$(printf '%s\n' "$res" | sed '$d' | reason)
  if [ "$n" -gt 0 ]; then row "$name" allowed "read 1 byte${over:+ (mounted over: $over)}"
  elif [ -n "$over" ]; then row "$name" denied "masked by $over; read 0 bytes${e:+ ($e)}"
  elif [ -n "$e" ] && is_denial "$e"; then row "$name" denied "read: $e"
  else row "$name" allowed "not masked; read 0 bytes${e:+ ($e)}"
  fi
}

# masked_dir ROW DIR: an empty listing (an empty tmpfs over it) or no such dir.
masked_dir() {
  name=$1 d=$2
  if [ ! -e "$d" ]; then row "$name" denied "$d absent"; return; fi
  over=$(mounted_at "$d")
  n=$(ls -A "$d" 2>/dev/null | wc -l)
  n=$(echo $n)
  if [ "$n" -eq 0 ]; then row "$name" denied "empty${over:+ (mounted over: $over)}"
  else row "$name" allowed "$n entries${over:+ (mounted over: $over)}"
  fi
}

# --- read-only --------------------------------------------------------------------------
ro /proc/sys /proc/sys /proc/sys/kernel/core_pattern
for f in /proc/sys/kernel/core_pattern /proc/sys/kernel/printk_ratelimit; do
  if [ ! -e "$f" ]; then row "$f" n/a "$f absent"; continue; fi
  r=$(try_append "$f")
  if [ "$r" = ok ]; then row "$f" allowed "opened for append"
  elif is_denial "$r"; then row "$f" denied "open for append: $r"
  else row "$f" allowed "open for append: $r (not a denial)"
  fi
done
ro /proc/sysrq-trigger /proc/sysrq-trigger
ro /proc/irq /proc/irq /proc/irq/default_smp_affinity
ro /proc/bus /proc/bus
ro /proc/fs /proc/fs
ro /proc/asound /proc/asound
ro /sys /sys /sys/kernel/uevent_helper /sys/kernel/profiling
ro /sys/fs/cgroup /sys/fs/cgroup

# --- masked -----------------------------------------------------------------------------
for f in /proc/kcore /proc/keys /proc/timer_list /proc/timer_stats /proc/latency_stats /proc/sched_debug; do
  masked_file "$f" "$f"
done
for d in /proc/acpi /proc/scsi /sys/firmware /sys/devices/virtual/powercap /sys/fs/selinux /sys/dev/block; do
  masked_dir "$d" "$d"
done

# --- /dev -------------------------------------------------------------------------------
# Device nodes besides the ones every runtime gives a container.
extra=
for n in /dev/* /dev/*/*; do
  [ -b "$n" ] || [ -c "$n" ] || continue
  [ -L "$n" ] && continue
  case "$n" in
  /dev/null | /dev/zero | /dev/full | /dev/random | /dev/urandom | /dev/tty | /dev/console | /dev/ptmx | /dev/pts/*) continue ;;
  esac
  extra="$extra $n"
done
if [ -n "$extra" ]; then row "/dev extra nodes" allowed "${extra# }"; else row "/dev extra nodes" denied "only null zero full random urandom tty console ptmx pts"; fi

# --- seccomp, capabilities, ids -----------------------------------------------------------
s=$(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status)
case "$s" in
2) row "no seccomp filter" denied "Seccomp: 2 (filtered)" ;;
0) row "no seccomp filter" allowed "Seccomp: 0 (no filter)" ;;
'') row "no seccomp filter" n/a "no Seccomp: field in /proc/self/status" ;;
*) row "no seccomp filter" denied "Seccomp: $s" ;;
esac
for c in CapBnd CapEff CapPrm CapInh CapAmb NoNewPrivs; do
  v=$(sed -n "s/^$c:[[:space:]]*//p" /proc/self/status)
  row "$c" info "${v:-absent}"
done
row uid_map info "$(cat /proc/self/uid_map 2>/dev/null | tr -s ' ' | sed 's/^ //' | tr '\n' ';')"
row gid_map info "$(cat /proc/self/gid_map 2>/dev/null | tr -s ' ' | sed 's/^ //' | tr '\n' ';')"
row id info "$(id 2>/dev/null)"

# --- PID 1 and the root ---------------------------------------------------------------------
# /proc/1/root must be this container's root: the same directory as / (and readlink "/").
l=$(readlink /proc/1/root 2>&1)
a=$(stat -L -c '%d:%i' /proc/1/root/ 2>&1)
b=$(stat -c '%d:%i' / 2>&1)
if [ "$a" = "$b" ] && [ "$l" = / ]; then row /proc/1/root denied "pid 1's root is / ($b)"
else row /proc/1/root allowed "pid 1's root: readlink '$l', dev:ino $a; / is $b"
fi
row "pid 1" info "$(cat /proc/1/comm 2>/dev/null) $(tr '\0' ' ' </proc/1/cmdline 2>/dev/null)"

# --- network ----------------------------------------------------------------------------
ifs=$(sed -n '3,$s/^ *\([^:]*\):.*/\1/p' /proc/net/dev 2>/dev/null | grep -v '^lo$' | tr '\n' ' ')
if [ -n "$ifs" ]; then row "network interfaces besides lo" allowed "$ifs"; else row "network interfaces besides lo" denied "only lo"; fi

# --- syscalls -----------------------------------------------------------------------------
if [ -x /probe/probe ]; then
  /probe/probe || row "probe" n/a "/probe/probe exited with status $?"
else
  row "probe" n/a "/probe/probe missing"
fi

# --- mount table --------------------------------------------------------------------------
# Every mount as `mountinfo` prints it (IDs dropped): the test checks that no host path shows.
while read -r _ _ dev root mp rest; do
  row mountinfo info "$mp root=$root dev=$dev $rest"
done </proc/self/mountinfo
exit 0
