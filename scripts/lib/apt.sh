# Sourced by the set-up scripts (bash): install the Debian packages a script needs.
#
#   install_missing WHO PKG...   apt-get install those of PKG... that are not installed yet.
#     Quiet when nothing is missing; otherwise says what it installs (prefixed "WHO:") on stderr.
#     Needs root for an install. Waits for the dpkg lock (other installs may run in parallel)
#     and refreshes the package index only when an install fails, the usual reason being a
#     stale or empty index. APT_EXTRA (an array, optional) adds apt-get options.
install_missing() {
  local who=$1 p
  shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$who: need root to install ${missing[*]}" >&2
    return 1
  fi
  echo "$who: installing ${missing[*]}" >&2
  local opts=(-y -qq -o DPkg::Lock::Timeout=600 ${APT_EXTRA[@]+"${APT_EXTRA[@]}"})
  DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${missing[@]}" >/dev/null
  }
}
