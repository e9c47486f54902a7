#!/usr/bin/env bash
# Print the Debian mirror the build scripts fetch from: $APIARY_DEBIAN_MIRROR when set, else the host's own
# apt sources (deb822 *.sources "URIs:" or one-line "deb URI suite" entries; the main archive, not
# -security or -updates paths), so a user's mirror or proxy is used and no host is named in the code.
# $APIARY_APT_ETC (default /etc/apt) is where the sources are read (tests point it elsewhere).
set -euo pipefail
if [[ -n "${APIARY_DEBIAN_MIRROR:-}" ]]; then echo "${APIARY_DEBIAN_MIRROR%/}"; exit 0; fi
etc="${APIARY_APT_ETC:-/etc/apt}"
pick() { grep -Ev -- '-security/?$|/debian-security|-updates/?$|^cdrom:|^file:' | head -n 1; }
found=""
shopt -s nullglob
for f in "$etc"/sources.list.d/*.sources; do
  found="$(awk 'tolower($1)=="uris:" {for (i = 2; i <= NF; i++) print $i}' "$f" | pick || true)"
  [[ -n "$found" ]] && break
done
if [[ -z "$found" ]]; then
  for f in "$etc"/sources.list "$etc"/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    found="$(awk '$1=="deb" {for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; break}}' "$f" | pick || true)"
    [[ -n "$found" ]] && break
  done
fi
if [[ -z "$found" ]]; then
  echo "debian-mirror: no Debian mirror in $etc/sources.list or $etc/sources.list.d/; set APIARY_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "${found%/}"
