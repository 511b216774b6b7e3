#!/usr/bin/env bash
# Checks the hotlease YANG modules with yanglint (package libyang2-tools):
#
#   1. the modules in yang/ compile with no warning and no error;
#   2. every node of the northbound contract (contract.txt) exists with
#      the expected properties (searched in the node's `-f info` form,
#      then in the `-f tree` form of the modules);
#   3. the valid instances validate: valid*.xml as configuration,
#      state.xml merged with valid.xml as a full datastore, notif/*.xml
#      as notifications, rpc/*.xml as RPCs against valid.xml;
#   4. every invalid/*.xml (and rpc/invalid-*.xml, notif/invalid-*.xml)
#      is rejected with the error its header announces:
#        <!-- expect-error: TEXT -->     TEXT appears in yanglint's output
#        <!-- expect-app-tag: TAG -->    the module rule whose
#                                        error-message is TEXT carries
#                                        error-app-tag TAG
#      (yanglint does not print error-app-tags, so the pairing of message
#      and tag is checked in the modules themselves; rules without
#      expect-app-tag are libyang built-ins: mandatory, range, unique,
#      leafref, ... whose app-tags RFC 7950 section 15 fixes).
#   5. daemon/*.xml break a rule whose cross-pool part hotleased enforces
#      at commit (not libyang: a must comparing every pool with every
#      other pool costs O(pools^2)).  They are not expected to fail here
#      (netconf-tests/test_daemon_rules.py commits them to the daemon);
#      check.sh only makes sure each one is accepted by yanglint (it
#      breaks no YANG rule, so the daemon's error is the only one), has
#      the expect-error and expect-app-tag headers, that the module text
#      documents the tag as "enforced by the daemon at commit (error-app-tag
#      TAG", that a tag the modules still carry is paired with the same
#      error-message, and that such a tag also has an invalid/*.xml (the
#      own-pool part, still a YANG rule).
#
# Usage: yang-tests/check.sh [-v]     (-v prints every check)
# Exit status: 0 when every expectation holds, 1 otherwise.

set -u
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
yang=$(cd "$here/../yang" && pwd)
verbose=0
[ "${1:-}" = "-v" ] && verbose=1

command -v yanglint >/dev/null || { echo "check.sh: yanglint not found (apt install libyang2-tools)" >&2; exit 1; }

modules=("$yang/hotlease-vrrp.yang" "$yang/hotlease-remote-backup.yang" "$yang/hotlease-dhcp-server.yang")
# -D: no implicit search in the current directory; imports come from yang/ only.
yl=(yanglint -D -p "$yang")

passed=0
failed=0
ok()   { passed=$((passed + 1)); [ "$verbose" = 1 ] && echo "ok   $*"; return 0; }
nok()  { failed=$((failed + 1)); echo "FAIL $*"; }
indent() { sed 's/^/       | /'; }

# header value of a test file: hdr FILE KEY
hdr() { sed -n "s/^<!-- $2: \(.*\) -->\$/\1/p" "$1" | head -n 1; }

# ---------------------------------------------------------------- 1. modules
out=$("${yl[@]}" "$yang"/*.yang 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then
    ok "modules: yanglint prints nothing"
else
    nok "modules: yanglint exit $rc"; printf '%s\n' "$out" | indent
fi

# YIN form of the modules, to pair error-messages with error-app-tags.
yin=$("${yl[@]}" -f yin "${modules[@]}" 2>&1) || { nok "modules: yin output"; printf '%s\n' "$yin" | indent; }

# app_tag_of MESSAGE-SUBSTRING -> prints the error-app-tag(s) of the rule(s)
# whose error-message contains MESSAGE-SUBSTRING
app_tag_of() {
    printf '%s\n' "$yin" | grep -F -A 2 -e "$1" | sed -n 's/.*<error-app-tag value="\([^"]*\)".*/\1/p' | sort -u
}

# -------------------------------------------------------------- 2. contract
tree=$("${yl[@]}" -f tree "${modules[@]}" 2>&1) || { nok "modules: tree output"; printf '%s\n' "$tree" | indent; }
while IFS='|' read -r path expects; do
    path=$(echo "$path" | sed 's/[[:space:]]*$//')
    case "$path" in ''|'#'*) continue ;; esac
    info=$("${yl[@]}" -f info -q -P "$path" "${modules[@]}" 2>&1)
    if [ $? -ne 0 ]; then
        nok "contract: $path does not exist"; printf '%s\n' "$info" | indent
        continue
    fi
    good=1
    IFS=';' read -r -a items <<<"$expects"
    for item in "${items[@]}"; do
        item=$(echo "$item" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
        [ -z "$item" ] && continue
        if ! printf '%s\n' "$info" | grep -qF -e "$item" &&
           ! printf '%s\n' "$tree" | grep -qF -e "$item"; then
            nok "contract: $path: no '$item'"
            good=0
        fi
    done
    [ $good = 1 ] && ok "contract: $path"
done <"$here/contract.txt"

# --------------------------------------------------------- 3. valid instances
expect_valid() {   # expect_valid LABEL yanglint-args...
    local label=$1; shift
    local out rc
    out=$("${yl[@]}" "$@" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
        ok "valid: $label"
    else
        nok "valid: $label (yanglint exit $rc)"; printf '%s\n' "$out" | indent
    fi
}

for f in "$here"/valid*.xml; do
    expect_valid "$(basename "$f")" -t config "${modules[@]}" "$f"
done
expect_valid "state.xml + valid.xml (-t data)" -t data -m "${modules[@]}" "$here/valid.xml" "$here/state.xml"
for f in "$here"/notif/*.xml; do
    case "$(basename "$f")" in invalid-*) continue ;; esac
    expect_valid "notif/$(basename "$f")" -t notif "${modules[@]}" "$f"
done
for f in "$here"/rpc/*.xml; do
    case "$(basename "$f")" in invalid-*) continue ;; esac
    expect_valid "rpc/$(basename "$f")" -t rpc -O "$here/valid.xml" "${modules[@]}" "$f"
done

# ------------------------------------------------------- 4. invalid instances
expect_invalid() {   # expect_invalid FILE yanglint-args...
    local f=$1; shift
    local label err tag out rc tags
    label=${f#"$here"/}
    err=$(hdr "$f" expect-error)
    tag=$(hdr "$f" expect-app-tag)
    if [ -z "$err" ]; then
        nok "$label: no expect-error header"
        return
    fi
    out=$("${yl[@]}" "$@" "$f" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        nok "$label: accepted, expected: $err"
        return
    fi
    if ! printf '%s\n' "$out" | grep -qF -e "$err"; then
        nok "$label: rejected for another reason, expected: $err"
        printf '%s\n' "$out" | indent
        return
    fi
    if [ -n "$tag" ]; then
        tags=$(app_tag_of "$err")
        if [ "$tags" != "$tag" ]; then
            nok "$label: the rule with error-message '$err' has error-app-tag '${tags//$'\n'/, }', expected '$tag'"
            return
        fi
    fi
    ok "$label${tag:+ [$tag]}"
}

for f in "$here"/invalid/*.xml; do
    expect_invalid "$f" -t config "${modules[@]}"
done
for f in "$here"/notif/invalid-*.xml; do
    [ -e "$f" ] && expect_invalid "$f" -t notif "${modules[@]}"
done
for f in "$here"/rpc/invalid-*.xml; do
    [ -e "$f" ] && expect_invalid "$f" -t rpc -O "$here/valid.xml" "${modules[@]}"
done

# ------------------------------------------ 5. rules enforced by the daemon
# Module text on one line, to find descriptions across line breaks.
flat=$(cat "${modules[@]}" | tr -s ' \n\t' '   ')
for f in "$here"/daemon/*.xml; do
    [ -e "$f" ] || continue
    label=${f#"$here"/}
    err=$(hdr "$f" expect-error)
    tag=$(hdr "$f" expect-app-tag)
    if [ -z "$err" ] || [ -z "$tag" ]; then
        nok "$label: needs both expect-error and expect-app-tag headers"
        continue
    fi
    out=$("${yl[@]}" -t config "${modules[@]}" "$f" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        nok "$label: yanglint must accept it (the daemon's error must be the only one), exit $rc"
        printf '%s\n' "$out" | indent
        continue
    fi
    if ! printf '%s\n' "$flat" | grep -qF -e "daemon at commit (error-app-tag $tag"; then
        nok "$label: no description says the cross-pool part is 'enforced by the daemon at commit (error-app-tag $tag'"
        continue
    fi
    tags=$(app_tag_of "$err")
    if [ -n "$tags" ]; then
        if [ "$tags" != "$tag" ]; then
            nok "$label: the YANG rule with error-message '$err' has error-app-tag '${tags//$'\n'/, }', expected '$tag'"
            continue
        fi
        if ! grep -lxF -e "<!-- expect-app-tag: $tag -->" "$here"/invalid/*.xml >/dev/null 2>&1; then
            nok "$label: no invalid/*.xml for the own-pool part of $tag"
            continue
        fi
    fi
    ok "$label: accepted by yanglint, enforced by the daemon [$tag]"
done

# ----------------------------------------------------------------- summary
echo "yang-tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
