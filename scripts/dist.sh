#!/bin/sh
# dist.sh - the source tarball 'petal launch' uploads ('make dist').
#
# usage: scripts/dist.sh OUT.tar.gz
#
# Packs an explicit allow-list: in a git checkout, the files git tracks
# (never untracked files, whatever .gitignore says); elsewhere the source
# folders. Nothing that looks like a credential is ever packed: a tracked
# file named like one (.env, *.pem, *.key, labsuser*, .aws/..., id_rsa...)
# stops the packing with its name; outside git such files are left out.
# Keep the patterns in step with launcher/secrets.c, which checks every
# tarball again before it is uploaded.
set -e
out=${1:?usage: dist.sh OUT.tar.gz}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")/.."
list=$(mktemp)
trap 'rm -f "$list" "$list.all" "$out.tmp"' EXIT

# prints the names (one per line, from stdin) that look like credential files
secret_names() {
    awk -F/ '{
        for (i = 1; i < NF; i++) {
            d = tolower($i)
            if (d == ".aws" || d == ".ssh" || d == ".gnupg") { print; next }
        }
        b = tolower($NF)
        if (b == ".env" || b == "credentials" || b == ".netrc" || b == ".git-credentials" ||
            b == ".pgpass" || b == ".npmrc" || b == ".pypirc" ||
            b ~ /^\.env\./ || b ~ /^labsuser/ || b ~ /^id_(rsa|dsa|ecdsa|ed25519)/ ||
            b ~ /^credentials\./ ||
            b ~ /\.(pem|key|p12|pfx|ppk|jks|keystore|env)$/) print
    }'
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c core.quotePath=false ls-files --cached >"$list.all"
    if grep -q '^"' "$list.all"; then
        echo "dist: file names with control characters are not packed:" >&2
        grep '^"' "$list.all" >&2
        exit 1
    fi
    bad=$(secret_names <"$list.all")
    if [ -n "$bad" ]; then
        echo "dist: refusing to pack tracked files that look like credentials:" >&2
        echo "$bad" | sed 's/^/  /' >&2
        echo "dist: remove them from git (git rm --cached FILE) and rotate what they hold" >&2
        exit 1
    fi
    # tracked files deleted from the work tree are not packed
    while IFS= read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done <"$list.all" >"$list"
    n=$(git ls-files --others --exclude-standard | wc -l)
    [ "$n" -eq 0 ] || echo "dist: $n untracked file(s) not packed (git add what the instances need)" >&2
else
    for d in Makefile README.md core nn net strategies data launcher scripts tests; do
        [ -e "$d" ] && find "$d" -type f ! -path '*/node_modules/*'
    done | sort >"$list.all"
    skip=$(secret_names <"$list.all")
    [ -z "$skip" ] || { echo "dist: left out (they look like credentials):" >&2; echo "$skip" | sed 's/^/  /' >&2; }
    if [ -n "$skip" ]; then
        echo "$skip" | grep -vxF -f - "$list.all" >"$list" || true
    else
        cp "$list.all" "$list"
    fi
fi
tar -czf "$out.tmp" --no-recursion --transform 's,^,petal/,' -T "$list"
mv "$out.tmp" "$out"
echo "$out"
