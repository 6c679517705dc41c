#!/usr/bin/env bash
# Extracts the translatable strings into po/vireo.pot, brings every
# po/LANG.po up to date with it, and merges the translations back into
# the desktop entry and AppStream metainfo in data/.
#
#   scripts/update-pot.sh            update po/ and data/ in place
#   scripts/update-pot.sh OUT.pot    only write the template to OUT.pot
#                                    (tests/i18n.rs compares it with po/vireo.pot)
#
# xgettext 0.21 has no Rust parser; its C parser reads Rust's string
# literals, escapes and comments the same way, and tests/i18n.rs checks
# that it finds every literal passed to gettext, ngettext and gettext_f.
set -euo pipefail

cd "$(dirname "$0")/.."
pot=${1:-po/vireo.pot}

mapfile -t files < <(grep -v '^\s*\(#\|$\)' po/POTFILES)
rust=()
data=()
for f in "${files[@]}"; do
  case "$f" in
    *.rs) rust+=("$f") ;;
    *) data+=("$f") ;;
  esac
done

common=(--from-code=UTF-8 --package-name=vireo --msgid-bugs-address=https://vireo.dev/issues
  --add-comments=Translators: --sort-by-file)
xgettext "${common[@]}" --language=C --keyword= --keyword=gettext --keyword=ngettext:1,2 \
  --keyword=gettext_f -o "$pot.tmp" "${rust[@]}"
xgettext "${common[@]}" --join-existing -o "$pot.tmp" "${data[@]}"
# Without the creation date, regenerating only changes the file when a
# string changes.
sed -e '/^"POT-Creation-Date:/d' -e 's/^# SOME DESCRIPTIVE TITLE./# Translatable strings of Vireo./' \
  -e 's/^# Copyright (C) YEAR THE PACKAGE.S COPYRIGHT HOLDER/# Copyright The Vireo developers/' \
  -e 's/PACKAGE package/vireo package/' "$pot.tmp" >"$pot"
rm -f "$pot.tmp"

[ $# -gt 0 ] && exit 0

for lang in $(grep -v '^\s*\(#\|$\)' po/LINGUAS); do
  msgmerge --quiet --update --backup=none --previous "po/$lang.po" "$pot"
done

msgfmt --desktop --template=data/dev.vireo.Vireo.desktop.in -d po -o data/dev.vireo.Vireo.desktop
msgfmt --xml --template=data/dev.vireo.Vireo.metainfo.xml.in -d po -o data/dev.vireo.Vireo.metainfo.xml
